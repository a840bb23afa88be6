"""BEAR (Kumar et al. 2019): stay on the behaviour's support, measured by MMD.

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
from safecritic.controller.learners.base import OwnActor
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
    def start(cls, model) -> None:
        """From pi_beta: inside the support from the first step."""
        model.actor.net.load_state_dict(model.prior.net.state_dict())

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
        the multiplier's dual step on the same MMD."""
        m, n = self.model, int(self.settings.samples)
        actions, _ = MixturePolicy.sample(m.actor.params(batch.obs), n, self.g)  # [N, B, A], differentiable
        q_task, _ = m.critic(batch.obs, actions)
        distance = self.support_distance(batch, actions)
        alpha = dual.multiplier(m.actor)
        loss = -q_task.min(dim=0).values.mean() + alpha * (distance.mean() - self.settings.epsilon)
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "mmd": distance.mean().detach(), **self.multiplier_step(distance.detach())}

    def multiplier_step(self, distance: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dual ascent: alpha grows while the MMD is over its budget, shrinks while under it."""
        return {"mmd_multiplier": dual.ascend(self.model.actor, self.opt["multiplier"],
                                              distance.mean() - self.settings.epsilon)}
