"""BRAC (Wu et al. 2019), the value-penalty form: a return that pays for leaving the behaviour.

The divergence D(s) = KL(pi(s) || pi_beta(s)), estimated by the actor's samples, is subtracted,
weighted by alpha, from the TD target's value at s' and from the actor's objective at s, so
that the critic prices drifting off the data and the actor trades return against it. alpha is
fixed, as in the paper's best variant; a larger alpha keeps the actor closer to pi_beta. The
accident critics are the default's; the task critic has no CQL term."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safecritic.controller.policies import MixtureParams, MixturePolicy, log_density
from safecritic.controller.learners.base import OwnActor
from safecritic.controller.update import Batch, PolicyAt, Targets, _step


@dataclass(frozen=True)
class Options:
    alpha: float = 0.1  # the divergence's price, in Q units per nat
    samples: float = 4  # actor samples per state in the KL estimate


def divergence(actor: MixtureParams, behaviour: MixtureParams, n: int, generator: torch.Generator) -> torch.Tensor:
    """KL(pi || pi_beta) per state [B], by n reparameterised samples of pi."""
    acts, logp = MixturePolicy.sample(actor, n, generator)
    return (logp - log_density(*behaviour, acts)).mean(dim=0)


class BRAC(OwnActor):
    name = "brac"
    Options = Options

    def targets(self, batch: Batch, policy: PolicyAt) -> Targets:
        """The default's targets, the task's with the value penalty: r + gamma (Q'(s', a') - alpha D(s'))."""
        t = super().targets(batch, policy)
        c = self.config.critics
        with torch.no_grad():
            penalty = self.settings.alpha * divergence(policy.next, batch.prior_next, int(self.settings.samples), self.g)
        task = t.task - c.gamma * (1.0 - batch.terminal) * penalty
        return Targets(task, t.policy_risk, t.recovery_risk)

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """max E[min_e Q_R(s, a)] - alpha D(s), a ~ pi(s) reparameterised."""
        m = self.model
        params = m.actor.params(batch.obs)
        acts, _ = MixturePolicy.sample(params, 1, self.g)
        q_task, _ = m.critic(batch.obs, acts)
        kl = divergence(params, batch.prior, int(self.settings.samples), self.g)
        loss = -q_task.min(dim=0).values.mean() + self.settings.alpha * kl.mean()
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "kl_to_prior": kl.mean().detach()}
