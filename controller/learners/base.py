"""What the learners other than the default share: an actor of their own, fitted on all the data
from pi_beta, no unconstrained twin, Q_R by plain TD (as their papers fit it), and an update that
runs the default's critic step, then the learner's `actor_step`, then the target networks."""

from __future__ import annotations

import torch

from safecritic.configs.schema import Config
from safecritic.controller.update import Batch, Update, adam, polyak


class OwnActor(Update):
    actor_rows = "all"
    has_twin = False
    plain_td = True  # False: the task critic keeps CQL's term (BC, whose critics serve only the gate)

    @classmethod
    def start(cls, model) -> None:
        """From pi_beta, which pretraining fitted to all the data."""
        model.actor.load_state_dict(model.prior.state_dict())

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
