"""PandaReach: a Franka Panda reaches a target past a box on a table, in PyBullet and MuJoCo.

The engine modules (bullet_env, mujoco_env) are imported only by gymnasium's entry
points, so importing this package loads neither engine.
"""

from safecritic.envs.panda.task import PandaLayout, PandaReachParams

__all__ = ["PandaLayout", "PandaReachParams"]
