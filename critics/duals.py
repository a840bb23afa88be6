"""Dual variables updated by projected gradient ascent: lambda <- clip(lambda + lr * violation, 0, max).

Used for CQL's Lagrangian alpha and the actor's cost and KL multipliers: one mechanism,
no optimiser state, easy to read off in the logs.
"""

from __future__ import annotations

import torch
from torch import nn


class DualVariable(nn.Module):
    """A non-negative multiplier; `update(violation)` raises it while the constraint is violated."""

    def __init__(self, init: float, lr: float, max_value: float = 1e6) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(init)))
        self.lr, self.max_value = float(lr), float(max_value)

    def update(self, violation: torch.Tensor | float) -> None:
        """violation > 0 means the constraint is broken (e.g. E[Q_C] - epsilon)."""
        step = self.lr * float(violation)
        self.value.copy_(torch.clamp(self.value + step, 0.0, self.max_value))

    def get(self) -> torch.Tensor:
        return self.value
