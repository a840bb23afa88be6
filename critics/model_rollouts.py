"""Short imagined rollouts from dataset states, penalised as MOPO does: the model-based
learners' synthetic data (MOPO trains on it; COMBO pushes Q down on it).

MOPO (Yu et al. 2020): branch h steps from states of the data with the current policy through
the learned model, and train on r~ = r - lambda u(s, a), u the model's uncertainty; the penalty
makes the imagined return a lower bound where the model is unsure. Our rollouts also carry the
cost side (critics/dynamics.py's cost head: the step's chance of a cost, as the accident
critics' targets expect) and stop where the model says the episode ends or a cost is likely,
so that no imagined transition continues past an accident.
"""

from __future__ import annotations

from typing import Callable

import torch

from safecritic.critics.dynamics import DynamicsEnsemble
from safecritic.envs.dataset import Transitions

Policy = Callable[[torch.Tensor], torch.Tensor]  # observations [B, obs_dim] -> actions [B, act_dim]


@torch.no_grad()
def imagine(model: DynamicsEnsemble, start: torch.Tensor, policy: Policy, horizon: int, penalty: float,
            generator: torch.Generator | None = None, end_probability: float = 0.5) -> Transitions:
    """Up to `horizon` imagined steps from each row of `start`; every step a transition with the
    penalised reward r - penalty * u(s, a). A rollout ends (terminal 1) where the model's terminal
    or cost probability exceeds `end_probability`; its cost is that probability (soft, in [0, 1])."""
    if horizon < 1 or penalty < 0:
        raise ValueError(f"horizon must be >= 1 and penalty >= 0, got {horizon} and {penalty}")
    obs, alive = start.clone(), torch.ones(start.shape[0], dtype=torch.bool)
    steps: list[dict[str, torch.Tensor]] = []
    for _ in range(horizon):
        # Step 1: the policy acts at the states still running; the model imagines the step.
        live = obs[alive]
        act = policy(live)
        nxt, reward, cost_p, end_p = model.step(live, act, generator)
        # Step 2: MOPO's penalty, from the same members' disagreement at (s, a).
        reward = reward - penalty * model.disagreement(live, act)
        # Step 3: a likely accident or end stops the rollout there.
        ended = (end_p > end_probability) | (cost_p > end_probability)
        steps.append({"obs": live, "act": act, "rew": reward, "cost": cost_p, "next_obs": nxt,
                      "terminal": ended.float()})
        obs = obs.clone()
        obs[alive] = nxt
        alive = alive.clone()
        alive[alive.clone()] = ~ended
        if not alive.any():
            break
    cat = {k: torch.cat([s[k] for s in steps]) for k in steps[0]}
    n = cat["obs"].shape[0]
    zeros = torch.zeros(n)
    return Transitions(obs=cat["obs"], act=cat["act"], rew=cat["rew"], cost=cat["cost"], next_obs=cat["next_obs"],
                       terminal=cat["terminal"], success=zeros, timeout=zeros.clone(),
                       episode=torch.full((n,), -1, dtype=torch.long), behavior=torch.full((n,), -1, dtype=torch.long))
