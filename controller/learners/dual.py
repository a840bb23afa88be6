"""A Lagrange multiplier learned by dual ascent, for the learners with a budget (BEAR's MMD,
BCQ-Lag's, BEAR-Lag's and CPQ's accident risk, COptiDICE's cost). It lives on the actor as a
parameter (`log_multiplier`, or another name where a learner has two), so checkpoints and
resumes carry it; it rises while the constraint is violated and falls while it holds."""

from __future__ import annotations

import torch
from torch import nn

LOG_RANGE = (-5.0, 10.0)  # the multiplier stays in [e^-5, e^10]


def attach(actor: nn.Module, log_start: float, name: str = "log_multiplier") -> nn.Module:
    setattr(actor, name, nn.Parameter(torch.tensor(float(log_start))))
    return actor


def multiplier(actor: nn.Module, name: str = "log_multiplier") -> torch.Tensor:
    """The current multiplier (no gradient: the primal step treats it as a constant)."""
    return getattr(actor, name).detach().exp()


def ascend(actor: nn.Module, optimizer: torch.optim.Optimizer, violation: torch.Tensor,
           name: str = "log_multiplier") -> torch.Tensor:
    """One dual step on `violation` (the constraint's value minus its budget; > 0: violated)."""
    log = getattr(actor, name)
    loss = -log.exp() * violation.detach()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        log.clamp_(*LOG_RANGE)
    return multiplier(actor, name)
