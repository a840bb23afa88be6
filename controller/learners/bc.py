"""BC: maximum likelihood of every action in the data, no critic in the actor's objective.

The baseline every offline method must beat (CORL, OSRL). The critics still train, with the
default's objectives, so that BC can also sit behind the gate."""

from __future__ import annotations

import torch

from safecritic.controller.learners.base import OwnActor
from safecritic.controller.update import Batch, _step, weighted_nll


class BC(OwnActor):
    name = "bc"
    plain_td = False

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
