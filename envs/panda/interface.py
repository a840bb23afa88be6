"""PandaReach's task interface (envs/task.py): its scripted behaviours.

No safe action of its own: the gate's generic fallback for such a task, the proposal (which
the constraint fitted to minimise the risk where nothing is within the budget), measured
better than a hold. On 100 MuJoCo episodes of the preset's run, a zero-velocity hold as the
fallback gave 51% success and a proposal fallback 69%, both without accidents. A conservative
accident critic vetoes every candidate near the table, and a hold then keeps the arm there
until the time runs out.
"""

from __future__ import annotations

from safecritic.envs.panda.behaviors import PANDA_BEHAVIORS
from safecritic.envs.task import Task

TASK = Task(name="panda_reach", behaviors=PANDA_BEHAVIORS)
