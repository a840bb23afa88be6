"""How well the accident critic ranks real danger in held-out episodes."""

from __future__ import annotations

import torch

from safecritic.critics.metrics import auroc
from safecritic.envs.dataset import Transitions


def steps_before_accident(transitions: Transitions, horizon: int, require_terminal: bool = True) -> torch.Tensor:
    """1 where an accident (cost > 0 on a terminal step; any cost > 0 without `require_terminal`)
    happens within `horizon` steps from here (this step included) in the same episode;
    transitions must be in episode order."""
    label = torch.zeros(len(transitions), dtype=torch.bool)
    events = transitions.cost > 0
    if require_terminal:
        events &= transitions.terminal > 0
    accident_rows = torch.nonzero(events).flatten()
    for row in accident_rows.tolist():
        episode = transitions.episode[row]
        first = max(0, row - horizon + 1)
        same = transitions.episode[first : row + 1] == episode
        label[first : row + 1] |= same
    return label


def accident_auroc(q_cost: torch.Tensor, transitions: Transitions, horizon: int = 10) -> dict[str, float]:
    """AUROC of Q_C(s, a_data) for 'an accident follows within `horizon` steps' vs the rest."""
    label = steps_before_accident(transitions, horizon)
    if label.all() or not label.any():
        return {"accident_auroc": float("nan"), "accident_positives": int(label.sum())}
    return {
        "accident_auroc": auroc(q_cost[~label], q_cost[label]),
        "accident_positives": int(label.sum()),
        "accident_negatives": int((~label).sum()),
    }
