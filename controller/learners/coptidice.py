"""COptiDICE (Lee et al. 2022): the constrained policy as a reweighting of the data.

Instead of a Q-function, COptiDICE estimates the ratio w(s, a) = d_pi(s, a) / d_D(s, a) of the
best constrained policy's discounted occupancy to the data's, and extracts the policy by
weighted behaviour cloning. With the soft chi^2 divergence f, the ratio has a closed form in
the "advantage" of a value function nu:

    e(s, a) = r - lambda c + gamma (1 - done) nu(s') - nu(s),   w = (f')^-1(e / alpha) >= 0

and nu, lambda minimise the dual  (1 - gamma) E_D[nu(s)] + alpha E_D[f*(e / alpha)] + lambda c_hat,
f*(y) = exp(y) - 1 for y < 0, y^2 / 2 + y otherwise (the data's states stand in for the initial
distribution, as is usual offline). lambda rises while the reweighted cost E_D[w c] is over the
budget c_hat and falls while it holds; the budget is policy.cost_limit as a discounted episode
cost, c_hat = (1 - gamma) cost_limit (a normalised occupancy's per-step cost). Every step is
in-sample: no action the data did not take is ever evaluated. The critics (Q_R by plain TD, the
default's accident critics) serve only the gate; OSRL's cost upper-bound correction is not built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from safecritic.configs.schema import Config
from safecritic.controller.learners import dual
from safecritic.controller.learners.base import OwnActor
from safecritic.controller.update import Batch, _step, adam, weighted_nll
from safecritic.critics.networks import MLP


@dataclass(frozen=True)
class Options:
    alpha: float = 1.0  # the divergence's weight: larger keeps w nearer 1 (nearer BC on all the data)
    nu_lr: float = 3e-4
    multiplier_lr: float = 1e-2  # dual ascent on log lambda
    log_multiplier_start: float = 0.0


def ratio(y: torch.Tensor) -> torch.Tensor:
    """(f')^-1(y) for the soft chi^2 f: exp(y) below 0, y + 1 above (>= 0, continuous at 0)."""
    return torch.where(y < 0, torch.exp(y.clamp_max(0.0)), y + 1.0)


def conjugate(y: torch.Tensor) -> torch.Tensor:
    """f*(y) = max_w (w y - f(w)) for the soft chi^2 f, attained at w = ratio(y)."""
    return torch.where(y < 0, torch.exp(y.clamp_max(0.0)) - 1.0, 0.5 * y * y + y)


class COptiDICE(OwnActor):
    name = "coptidice"
    Options = Options

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> torch.nn.Module:
        """A mixture policy that also holds nu and log lambda (checkpoints and resumes carry them)."""
        actor = super().build_actor(model, obs_dim, act_dim, config)
        actor.nu = MLP(obs_dim, list(config.policy.hidden), 1)
        return dual.attach(actor, cls.options(config).log_multiplier_start)

    @classmethod
    def optimizers(cls, model, config: Config) -> dict[str, torch.optim.Optimizer]:
        o, actor = cls.options(config), model.actor
        return {"actor": adam(actor.net.parameters(), config.policy.lr), "nu": adam(actor.nu.parameters(), o.nu_lr),
                "multiplier": adam([actor.log_multiplier], o.multiplier_lr)}

    def budget(self) -> float:
        """c_hat: policy.cost_limit as a per-step cost of the normalised occupancy."""
        return (1.0 - self.config.critics.gamma) * self.config.policy.cost_limit

    def advantage(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """e(s, a) = r - lambda c + gamma (1 - done) nu(s') - nu(s) [B], and nu(s) [B] (the dual's
        first term needs it too: one pass of nu)."""
        nu = self.model.actor.nu
        lam = dual.multiplier(self.model.actor)
        v, v_next = nu(batch.obs).squeeze(-1), nu(batch.next_obs).squeeze(-1)
        e = batch.rew - lam * batch.cost + self.config.critics.gamma * (1.0 - batch.terminal) * v_next - v
        return e, v

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """1. nu's dual step; 2. the weighted fit of the data's actions, w = ratio(e / alpha);
        3. lambda's dual step on the reweighted cost."""
        alpha, gamma = self.settings.alpha, self.config.critics.gamma
        e, v = self.advantage(batch)
        nu_loss = (1.0 - gamma) * v.mean() + alpha * conjugate(e / alpha).mean()
        _step(self.opt["nu"], nu_loss)
        w = ratio(e.detach() / alpha)
        loss = weighted_nll(self.model.actor, batch, w)
        _step(self.opt["actor"], loss)
        cost = (w * batch.cost).mean()
        lam = dual.ascend(self.model.actor, self.opt["multiplier"], cost - self.budget())
        return {"actor_loss": loss.detach(), "nu_loss": nu_loss.detach(), "weight_max": w.max(),
                "reweighted_cost": cost, "cost_multiplier": lam}
