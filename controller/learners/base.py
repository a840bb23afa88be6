"""What the learners other than the default share: an actor of their own, fitted on all the data
from pi_beta, no unconstrained twin, Q_R by plain TD (as their papers fit it), and an update that
runs the default's critic step, then the learner's `actor_step`, then the target networks."""

from __future__ import annotations

import torch

from safecritic.configs.schema import Config
from safecritic.controller.update import Batch, Update, adam, polyak
from safecritic.critics.q_ensemble import POLICY_RISK


def risk_of(cost_logits: torch.Tensor | None, critic) -> torch.Tensor:
    """The most pessimistic member's Q_C under the policy, from the critic's cost logits [E, ..., H]
    -> [...] (zeros when the config trains no accident critic)."""
    if cost_logits is None:
        return torch.zeros(())
    return critic.cost_value(cost_logits[..., POLICY_RISK].max(dim=0).values)


class OwnActor(Update):
    actor_rows = "all"
    has_twin = False
    plain_td = True  # False: the task critic keeps CQL's term (BC, whose critics serve only the gate)

    @classmethod
    def start(cls, model) -> None:
        """From pi_beta, which pretraining fitted to all the data (the mixture's network only: a
        learner may hang its own parameters, a multiplier or a value net, on the actor)."""
        model.actor.net.load_state_dict(model.prior.net.state_dict())

    @classmethod
    def optimizers(cls, model, config: Config) -> dict[str, torch.optim.Optimizer]:
        return {"actor": adam(model.actor.parameters(), config.policy.lr)}

    def __init__(self, model, config: Config, optimizers, generator, data=None) -> None:
        super().__init__(model, config, optimizers, generator, data)
        if self.plain_td:
            self.task_alpha = 0.0

    def __call__(self, batch: Batch, actor_batch: Batch) -> dict[str, torch.Tensor]:
        policy = self.policy_at(batch)
        out = self.critic_step(batch, policy, self.targets(batch, policy))
        out.update(self.actor_step(actor_batch))
        polyak(self.model, self.config.critics.tau)
        return out

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        raise NotImplementedError
