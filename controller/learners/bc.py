"""BC: maximum likelihood of every action in the data, no critic in the actor's objective.

The baseline every offline method must beat (CORL, OSRL). The critics still train, with the
default's objectives, so that BC can also sit behind the gate."""

from __future__ import annotations

import torch

from safecritic.controller.update import Batch, Update, _step, polyak, weighted_nll


class BC(Update):
    name = "bc"
    actor_rows = "all"
    has_twin = False

    @classmethod
    def start(cls, model) -> None:
        """From pi_beta, which pretraining already fitted the same way."""
        model.actor.load_state_dict(model.prior.state_dict())

    def __call__(self, batch: Batch, actor_batch: Batch) -> dict[str, torch.Tensor]:
        policy = self.policy_at(batch)
        out = self.critic_step(batch, policy, self.targets(batch, policy))
        out.update(self.actor_step(actor_batch))
        polyak(self.model, self.config.critics.tau)
        return out

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """-mean log pi(a|s) over the data's actions."""
        loss = weighted_nll(self.model.actor, batch, torch.ones_like(batch.rew))
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach()}


class BCSafe(BC):
    """BC-Safe (OSRL): behaviour cloning on the safe episodes only, those within the cost budget
    (data.successful_max_cost), whatever their return."""

    name = "bc_safe"
    actor_rows = "safe"

    @classmethod
    def start(cls, model) -> None:
        """From pi_ref, fitted to the safe episodes that also succeeded: the nearest prior."""
        model.actor.load_state_dict(model.reference.state_dict())
