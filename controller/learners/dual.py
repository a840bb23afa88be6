"""Lagrange multipliers for the learners with a budget: log-space dual ascent (BEAR's MMD,
COptiDICE's cost) and OSRL's PID Lagrangian (BCQ-Lag's and BEAR-Lag's accident risk). Each lives
on the actor (a parameter `log_multiplier`, or buffers for the PID's state), so checkpoints and
resumes carry it; it rises while the constraint is violated and falls while it holds."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PIDGains:
    """OSRL's PID Lagrangian gains (Stooke et al. 2020), for the OSRL peers' average cost constraint
    (a learner's Options inherit them, so policy.learner_options sets them).

    OSRL's are (0.1, 0.003, 0.001) on rewards scaled by 0.1; ours act on unscaled rewards, so ten
    times theirs. Why not log-space ascent: Adam moves log lambda by ~lr per update whatever the
    violation's size, so a budget a little out of reach on the data's states sends lambda to its
    cap within a thousand updates and the actor ignores the return (docs/design.md, "The learners",
    has the measurement). The PID multiplier grows with
    the violation's integral, linearly."""

    kp: float = 1.0
    ki: float = 0.03
    kd: float = 0.01


def attach_pid(actor: nn.Module, name: str = "cost_multiplier") -> nn.Module:
    """The PID multiplier's state as buffers on the actor (checkpointed and resumed with it)."""
    for suffix in ("", "_integral", "_error"):
        actor.register_buffer(name + suffix, torch.zeros(()))
    return actor


def pid_step(actor: nn.Module, violation: torch.Tensor, gains: PIDGains, name: str = "cost_multiplier") -> torch.Tensor:
    """lambda = relu(kp relu(e) + ki I + kd relu(e - e_old)), I = relu(I + e), e the violation."""
    error = violation.detach().float()
    integral, previous = getattr(actor, name + "_integral"), getattr(actor, name + "_error")
    rising = torch.relu(error - previous)
    integral.copy_(torch.relu(integral + error))
    previous.copy_(error)
    value = getattr(actor, name)
    value.copy_(torch.relu(gains.kp * torch.relu(error) + gains.ki * integral + gains.kd * rising))
    return value.clone()
