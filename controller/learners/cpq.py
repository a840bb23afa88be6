"""CPQ (Xu et al. 2022, Constraints Penalized Q-learning): no return is learned through unsafe actions.

CPQ's cost critic is conservative off the data (it over-estimates Q_C at out-of-distribution
actions); here that is the default's accident critic, whose CSC term pushes Q_C up off the
data as CPQ's push-up at its VAE's out-of-distribution actions does. CPQ then uses it twice:

- the task critic's backup is cut where the next action is unsafe: r + gamma 1[Q_C(s', a') <=
  epsilon] min_e Q_R'(s', a'), a' ~ pi(s'), so a state from which the policy would take an
  unsafe action is worth only its immediate reward (plain TD otherwise, no CQL term);
- the actor (SAC's, a fixed entropy price) maximises Q_R only where its action is safe:
  E[1[Q_C(s, a) <= epsilon] min_e Q_R(s, a) - entropy log pi(a|s)], a ~ pi(s).

epsilon is policy.cost_limit, the budget every learner shares. Unlike the default's state-wise
constraint, nothing pulls an unsafe action's risk down: CPQ only refuses to value it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safecritic.controller.policies import MixturePolicy
from safecritic.controller.learners.base import OwnActor, risk_of
from safecritic.controller.update import Batch, _step
from safecritic.critics.cql import task_target


@dataclass(frozen=True)
class Options:
    entropy: float = 0.05  # SAC's fixed temperature


def safe_mask(risk: torch.Tensor, limit: float) -> torch.Tensor:
    """1 where the action's Q_C is within the budget, else 0."""
    return (risk <= limit).float()


class CPQ(OwnActor):
    name = "cpq"
    Options = Options

    def task_backup(self, batch: Batch, q_next: torch.Tensor, risk_next: torch.Tensor | None) -> torch.Tensor:
        """r + gamma (1 - terminal) 1[max_e Q_C(s', a') <= epsilon] min_e Q_R'(s', a')."""
        if risk_next is not None:
            q_next = q_next * safe_mask(risk_next.max(dim=0).values, self.config.policy.cost_limit)
        return task_target(batch.rew, batch.terminal, q_next, self.config.critics.gamma)

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """max E[1[Q_C(s, a) <= epsilon] min_e Q_R(s, a) - entropy log pi(a|s)], a ~ pi(s) reparameterised."""
        m = self.model
        acts, logp = MixturePolicy.sample(m.actor.params(batch.obs), 1, self.g)
        q_task, cost_logits = m.critic(batch.obs, acts)
        keep = safe_mask(risk_of(cost_logits, m.critic).detach(), self.config.policy.cost_limit)
        loss = (self.settings.entropy * logp - keep * q_task.min(dim=0).values).mean()
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "actor_log_prob": logp.mean().detach(), "safe_actions": keep.mean()}
