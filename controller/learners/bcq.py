"""BCQ (Fujimoto et al. 2019): act only near what the data did.

A generative model of the behaviour proposes actions, a perturbation network moves each by at
most phi per entry, and the one with the highest Q_R runs. The generative model is pi_beta, the
behaviour prior pretraining already fits by maximum likelihood (a Gaussian mixture: it plays
the VAE's part, and the mixture keeps the behaviours' modes apart as the VAE's decoder does).
The task critic learns by plain TD through that policy, as BCQ's does (no CQL term); the
accident critics are the default's.

The policy is deterministic and exportable: its candidates are fixed quasi-samples of the
mixture (component i mod K, moved by a fixed standard-normal draw times its std), the same at
every call; it presents them as a mixture with all its weight on the chosen one, so the gate
ranks its candidates and the bare policy runs its choice."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from safecritic.configs.schema import Config
from safecritic.controller.policies import MixtureParams, MixturePolicy
from safecritic.controller.learners import dual
from safecritic.controller.learners.base import OwnActor, risk_of
from safecritic.controller.update import Batch, _step, adam
from safecritic.critics.networks import MLP
from safecritic.critics.q_ensemble import QEnsemble, pair_inputs


@dataclass(frozen=True)
class Options:
    phi: float = 0.05  # the largest perturbation per action entry, in the unit box (BCQ's Phi)
    samples: float = 10  # the generative model's candidates per state (BCQ's n)
    spread: float = -3.0  # log-std the policy presents around its choice (the gate's offsets scale by it)


class BCQPolicy(nn.Module):
    """argmax over perturbed generative candidates of min-over-members Q_R."""

    def __init__(self, generative: MixturePolicy, critic: QEnsemble, obs_dim: int, act_dim: int,
                 hidden: list[int], options: Options, seed: int = 0, priced: bool = False) -> None:
        super().__init__()
        self.priced = priced  # BCQ-Lag: candidates ranked by Q_R - lambda Q_C (lambda: cost_multiplier)
        dual.attach_pid(self)
        n, k = int(options.samples), generative.components
        self.generative, self.critic = generative, critic
        self.perturbation = MLP(obs_dim + act_dim, hidden, act_dim)
        self.phi, self.spread = float(options.phi), float(options.spread)
        self.components, self.act_dim = n, act_dim
        self.register_buffer("noise", torch.randn(n, act_dim, generator=torch.Generator().manual_seed(seed)))
        self.register_buffer("which", torch.arange(n) % k)

    def candidates(self, obs: torch.Tensor) -> torch.Tensor:
        """The generative model's fixed quasi-samples at obs [N, B, A]."""
        _, mean, log_std = self.generative(obs)
        mu, std = mean[:, self.which], log_std[:, self.which].exp()  # [B, N, A]
        return (mu + std * self.noise).clamp(-1.0, 1.0).transpose(0, 1)

    def perturb(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """acts [N, B, A] moved by xi(s, a) in [-phi, phi]^A, kept in the box."""
        n, b = acts.shape[0], acts.shape[1]
        xi = self.phi * torch.tanh(self.perturbation(pair_inputs(obs, acts))).view(n, b, -1)
        return (acts + xi).clamp(-1.0, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        acts = self.perturb(obs, self.candidates(obs))  # [N, B, A]
        n, b = acts.shape[0], acts.shape[1]
        q_task, cost_logits = self.critic.from_pairs(pair_inputs(obs, acts), n, b)
        best = self.value(q_task, cost_logits).argmax(dim=0)  # [B]
        log_w = torch.full((b, n), -30.0, device=obs.device).scatter(1, best.unsqueeze(1), 0.0)
        log_w = log_w - torch.logsumexp(log_w, dim=1, keepdim=True)
        return log_w, acts.transpose(0, 1), torch.full((b, n, self.act_dim), self.spread, device=obs.device)

    def value(self, q_task: torch.Tensor, cost_logits: torch.Tensor | None) -> torch.Tensor:
        """What the policy maximises per candidate [N, B]: min-over-members Q_R, less lambda times
        the most pessimistic member's Q_C under the policy for BCQ-Lag."""
        value = q_task.min(dim=0).values
        if self.priced and cost_logits is not None:
            q_c = torch.sigmoid(cost_logits[..., 0].max(dim=0).values)  # POLICY_RISK (TorchScript reads no globals)
            value = value - self.cost_multiplier * q_c
        return value

    @torch.jit.ignore
    def params(self, obs: torch.Tensor) -> MixtureParams:
        return MixtureParams(*self.forward(obs))

    @torch.jit.export
    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        log_w, mean, _ = self.forward(obs)
        return torch.gather(mean, 1, log_w.argmax(dim=1).view(-1, 1, 1).expand(-1, 1, mean.shape[2])).squeeze(1)


class BCQ(OwnActor):
    name = "bcq"
    Options = Options

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> nn.Module:
        return BCQPolicy(model.prior, model.critic, obs_dim, act_dim, list(config.policy.hidden), cls.options(config),
                         config.run.seed)

    @classmethod
    def start(cls, model) -> None:
        """The perturbation starts near zero: the policy starts as the best of pi_beta's candidates."""
        with torch.no_grad():
            last = model.actor.perturbation.net[-1]
            last.weight.mul_(1e-3)
            last.bias.zero_()

    @classmethod
    def optimizers(cls, model, config: Config) -> dict[str, torch.optim.Optimizer]:
        return {"actor": adam(model.actor.perturbation.parameters(), config.policy.lr)}

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """xi maximises min_e Q_R(s, a + xi(s, a)) at samples a of the generative model."""
        actor: BCQPolicy = self.model.actor
        with torch.no_grad():
            sampled, _ = MixturePolicy.sample(batch.prior, 1, self.g)  # [1, B, A]
        moved = actor.perturb(batch.obs, sampled)
        q_task, cost_logits = self.model.critic(batch.obs, moved)
        loss = -actor.value(q_task, cost_logits).mean()
        _step(self.opt["actor"], loss)
        return {"actor_loss": loss.detach(), "perturbation": (moved - sampled).abs().mean().detach()}


@dataclass(frozen=True)
class LagOptions(Options, dual.PIDGains):
    """The learner's settings and the cost multiplier's PID gains (kp, ki, kd)."""


class BCQLag(BCQ):
    """BCQ-Lag (OSRL): BCQ whose perturbation maximises Q_R - lambda Q_C, with lambda OSRL's PID
    Lagrangian on the batch's mean Q_C(s, pi(s)) against policy.cost_limit. An average constraint
    over states, where the default's is state-wise (docs/design.md, "The accident constraint")."""

    name = "bcq_lag"
    Options = LagOptions

    @classmethod
    def build_actor(cls, model, obs_dim: int, act_dim: int, config: Config) -> nn.Module:
        return BCQPolicy(model.prior, model.critic, obs_dim, act_dim, list(config.policy.hidden), cls.options(config),
                         config.run.seed, priced=True)

    def __call__(self, batch: Batch, actor_batch: Batch) -> dict[str, torch.Tensor]:
        out = super().__call__(batch, actor_batch)
        out.update(self.multiplier_step(actor_batch))
        return out

    def multiplier_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """lambda rises while the policy's mean Q_C is over the budget, falls while under it."""
        m = self.model
        with torch.no_grad():
            risk = risk_of(m.critic(batch.obs, m.actor.mode(batch.obs))[1], m.critic).mean()
        return {"policy_risk": risk, "cost_multiplier": dual.pid_step(m.actor, risk - self.config.policy.cost_limit,
                                                                      self.settings)}


def largest_move(actor: BCQPolicy, obs: torch.Tensor) -> float:
    """The largest distance, per entry, from the policy's action to its generative candidates (<= phi)."""
    with torch.no_grad():
        cands = actor.candidates(obs)
        chosen = actor.mode(obs)
        return float((chosen.unsqueeze(0) - cands).abs().amax(dim=-1).min(dim=0).values.max())

