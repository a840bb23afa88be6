"""BEAR (Kumar et al. 2019): stay on the behaviour's support, measured by MMD; and BEAR-Lag (OSRL),
which also prices the accident risk.

The actor maximises min-over-members Q_R subject to MMD(pi(s), pi_beta(s)) <= epsilon, a
support constraint rather than a density match: actions the data took with low probability
stay allowed. The constraint is enforced by a Lagrange multiplier learned by dual ascent; the
MMD uses a Gaussian kernel on samples of both policies. The task critic learns by plain TD on
the actor's samples (no CQL term); the accident critics are the default's."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safecritic.configs.schema import Config
from safecritic.controller.policies import MixturePolicy
from safecritic.controller.learners import dual
from safecritic.controller.learners.base import OwnActor, risk_of
from safecritic.controller.update import Batch, _step, adam


@dataclass(frozen=True)
class Options:
    epsilon: float = 0.05  # the MMD budget
    samples: float = 10  # samples of each policy per state in the MMD estimate
    sigma: float = 0.2  # the Gaussian kernel's bandwidth: k(x, y) = exp(-|x - y|^2 / (2 sigma))
    multiplier_lr: float = 1e-3  # dual ascent on log alpha
    log_multiplier_start: float = 0.0


def mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """MMD per state between samples x [N, B, A] and y [M, B, A] -> [B]: the square root of the
    unbiased MMD^2 (no self-pairs), so that a policy equal to pi_beta scores ~0 and a budget is
    reachable; the biased estimate sits near sqrt(2 / N) for identical policies."""
    def k(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # [N, M, B]
        return torch.exp(-(p.unsqueeze(1) - q.unsqueeze(0)).pow(2).sum(-1) / (2.0 * sigma))

    def within(p: torch.Tensor) -> torch.Tensor:  # mean over distinct pairs
        n = p.shape[0]
        return (k(p, p).sum(dim=(0, 1)) - n) / (n * (n - 1))

    squared = within(x) + within(y) - 2.0 * k(x, y).mean(dim=(0, 1))
    return squared.clamp_min(0.0).add(1e-6).sqrt()


class BEAR(OwnActor):
    name = "bear"
    Options = Options

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> torch.nn.Module:
        """A mixture policy that also holds log alpha (so checkpoints and resumes carry it)."""
        return dual.attach(super().build_actor(model, obs_dim, act_dim, config), cls.options(config).log_multiplier_start)

    @classmethod
    def optimizers(cls, model, config: Config) -> dict[str, torch.optim.Optimizer]:
        actor = model.actor
        return {"actor": adam(actor.net.parameters(), config.policy.lr),
                "multiplier": adam([actor.log_multiplier], cls.options(config).multiplier_lr)}

    def support_distance(self, batch: Batch, actions: torch.Tensor) -> torch.Tensor:
        """MMD between the actor's samples `actions` [N, B, A] and pi_beta's at the same states [B]."""
        n = int(self.settings.samples)
        with torch.no_grad():
            behaviour, _ = MixturePolicy.sample(batch.prior, n, self.g)
        return mmd(actions, behaviour, self.settings.sigma)

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """max E[min_e Q_R(s, a)] - alpha (MMD - epsilon), a ~ pi(s) reparameterised; then
        the multiplier's dual step on the same MMD. The samples' mean risk is logged (BEAR-Lag's
        dual step reads it)."""
        m, n = self.model, int(self.settings.samples)
        actions, _ = MixturePolicy.sample(m.actor.params(batch.obs), n, self.g)  # [N, B, A], differentiable
        q_task, cost_logits = m.critic(batch.obs, actions)
        distance = self.support_distance(batch, actions)
        alpha = dual.multiplier(m.actor)
        loss = -self.value(q_task, cost_logits).mean() + alpha * (distance.mean() - self.settings.epsilon)
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "mmd": distance.mean().detach(),
                "policy_risk": risk_of(cost_logits, m.critic).detach().mean(),
                **self.multiplier_step(distance.detach())}

    def value(self, q_task: torch.Tensor, cost_logits: torch.Tensor | None) -> torch.Tensor:
        """What the actor maximises per sample [N, B]: min-over-members Q_R."""
        return q_task.min(dim=0).values

    def multiplier_step(self, distance: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dual ascent: alpha grows while the MMD is over its budget, shrinks while under it."""
        return {"mmd_multiplier": dual.ascend(self.model.actor, self.opt["multiplier"],
                                              distance.mean() - self.settings.epsilon)}


@dataclass(frozen=True)
class LagOptions(Options, dual.PIDGains):
    """The learner's settings and the cost multiplier's PID gains (kp, ki, kd)."""


class BEARLag(BEAR):
    """BEAR-Lag (OSRL): BEAR whose actor maximises Q_R - lambda Q_C inside the MMD budget, lambda
    OSRL's PID Lagrangian on the batch's mean Q_C(s, a ~ pi(s)) against policy.cost_limit (an
    average constraint over states, as BCQ-Lag's)."""

    name = "bear_lag"
    Options = LagOptions

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> torch.nn.Module:
        actor = super().build_actor(model, obs_dim, act_dim, config)
        return dual.attach_pid(actor)

    def value(self, q_task: torch.Tensor, cost_logits: torch.Tensor | None) -> torch.Tensor:
        """min-over-members Q_R less lambda times the most pessimistic member's Q_C."""
        risk = risk_of(cost_logits, self.model.critic)
        return super().value(q_task, cost_logits) - self.model.actor.cost_multiplier * risk

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """BEAR's step on the priced value, then lambda's dual step on the same samples' risk."""
        out = super().actor_step(batch)
        out["cost_multiplier"] = dual.pid_step(self.model.actor, out["policy_risk"] - self.config.policy.cost_limit,
                                               self.settings)
        return out
