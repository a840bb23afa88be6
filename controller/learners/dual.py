"""A Lagrange multiplier learned by dual ascent, for the learners with a budget (BEAR's MMD,
BCQ-Lag's accident risk). It lives on the actor as `log_multiplier`, so checkpoints and resumes
carry it; it rises while the constraint is violated and falls while it holds."""

from __future__ import annotations

import torch
from torch import nn

LOG_RANGE = (-5.0, 10.0)  # the multiplier stays in [e^-5, e^10]


def attach(actor: nn.Module, log_start: float) -> nn.Module:
    actor.log_multiplier = nn.Parameter(torch.tensor(float(log_start)))
    return actor


def multiplier(actor: nn.Module) -> torch.Tensor:
    """The current multiplier (no gradient: the primal step treats it as a constant)."""
    return actor.log_multiplier.detach().exp()


def ascend(actor: nn.Module, optimizer: torch.optim.Optimizer, violation: torch.Tensor) -> torch.Tensor:
    """One dual step on `violation` (the constraint's value minus its budget; > 0: violated)."""
    loss = -actor.log_multiplier.exp() * violation.detach()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        actor.log_multiplier.clamp_(*LOG_RANGE)
    return multiplier(actor)
