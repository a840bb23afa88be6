"""A batched probabilistic dynamics ensemble: the model the model-based learners roll out.

E Gaussian models of one step, p_e(s' - s, r | s, a), with a cost head (the step's chance of a
cost) and a terminal head, evaluated as one batched pass (critics/networks.EnsembleMLP). It is the
shared piece of MOPO (reward penalised by the members' disagreement), COMBO (CQL pushed down on
model rollouts) and ARMOR; the cost head gives their rollouts the same cost side as ours.

Why each part: inputs and targets are normalised by the data's statistics (one learning rate
fits every entry); each member trains on its own bootstrap of the training rows (the spread of
the members is then an estimate of what the data does not pin down, PETS / MBPO); the log-std is
kept between learned soft bounds, so that the Gaussian likelihood cannot buy a lower loss by
collapsing the variance on a few rows; a held-out split measures the one-step error against the
trivial "nothing changes" predictor, which is what any model must beat to be worth rolling out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from safecritic.critics.networks import EnsembleMLP, Normalizer
from safecritic.envs.dataset import Transitions


@dataclass(frozen=True)
class HeldOutError:
    """One-step error on rows no member trained on, in data standard deviations (squared)."""

    next_obs_mse: float  # the elites' mean prediction of s' (normalised), mean over rows and entries
    next_obs_mse_no_change: float  # the same for the predictor s' = s
    reward_mse: float  # normalised reward
    reward_mse_mean: float  # predicting the training rows' mean reward
    cost_brier: float  # of the cost head's probability against the observed cost
    cost_brier_base_rate: float  # of the training rows' cost rate
    member_next_obs_mse: tuple[float, ...]
    elites: tuple[int, ...]

    @property
    def skill(self) -> float:
        """1 - model / no-change error on s': 0 is no better than standing still, 1 is exact."""
        return 1.0 - self.next_obs_mse / max(self.next_obs_mse_no_change, 1e-12)


class DynamicsEnsemble(nn.Module):
    """E probabilistic one-step models; forward gives every member's prediction at once."""

    def __init__(self, obs_dim: int, act_dim: int, obs_stats: tuple[torch.Tensor, torch.Tensor],
                 act_stats: tuple[torch.Tensor, torch.Tensor], delta_stats: tuple[torch.Tensor, torch.Tensor],
                 reward_stats: tuple[float, float], members: int = 7, elites: int = 5,
                 hidden: tuple[int, ...] = (200, 200, 200)) -> None:
        super().__init__()
        if not 1 <= elites <= members:
            raise ValueError(f"elites must be between 1 and members ({members}), got {elites}")
        self.obs_dim, self.act_dim, self.members = obs_dim, act_dim, members
        self.obs_norm, self.act_norm = Normalizer(*obs_stats), Normalizer(*act_stats)
        self.register_buffer("delta_mean", delta_stats[0].float().clone())
        self.register_buffer("delta_std", delta_stats[1].float().clone())
        self.register_buffer("reward_mean", torch.tensor(float(reward_stats[0])))
        self.register_buffer("reward_std", torch.tensor(float(reward_stats[1])))
        self.gauss_dim = obs_dim + 1  # the normalised change of s, then the normalised reward
        self.net = EnsembleMLP(members, obs_dim + act_dim, hidden, 2 * self.gauss_dim + 2, activation="silu")
        self.max_log_std = nn.Parameter(torch.full((self.gauss_dim,), 0.5))
        self.min_log_std = nn.Parameter(torch.full((self.gauss_dim,), -10.0))
        self.register_buffer("elite_index", torch.arange(elites))

    @classmethod
    def for_data(cls, data: Transitions, **kwargs) -> "DynamicsEnsemble":
        """Sized and normalised by the transitions it will be trained on."""
        def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean(0), x.std(0).clamp_min(1e-6)

        delta = data.next_obs - data.obs
        return cls(data.obs.shape[1], data.act.shape[1], stats(data.obs), stats(data.act), stats(delta),
                   (float(data.rew.mean()), float(data.rew.std().clamp_min(1e-6))), **kwargs)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                      torch.Tensor]:
        """Per member [E, B, ...]: mean and log-std of (normalised s' - s, normalised r), the cost
        logit and the terminal logit. obs/act [B, d] (shared by the members) or [E, B, d]."""
        out = self.net(torch.cat([self.obs_norm(obs), self.act_norm(act)], dim=-1))
        mean, raw_log_std = out[..., :self.gauss_dim], out[..., self.gauss_dim:2 * self.gauss_dim]
        # Soft bounds (PETS): smooth, and learned, so the loss's bound term keeps them honest.
        log_std = self.max_log_std - F.softplus(self.max_log_std - raw_log_std)
        log_std = self.min_log_std + F.softplus(log_std - self.min_log_std)
        return mean, log_std, out[..., -2], out[..., -1]

    def targets(self, batch: Transitions) -> torch.Tensor:
        """(normalised s' - s, normalised r) of real transitions, [B, obs_dim + 1]."""
        delta = (batch.next_obs - batch.obs - self.delta_mean) / self.delta_std
        return torch.cat([delta, ((batch.rew - self.reward_mean) / self.reward_std).unsqueeze(-1)], dim=-1)

    def loss(self, batch: Transitions, rows: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of every member on its own rows (`rows` [E, B] indexes `batch`), plus the
        cost and terminal heads' cross-entropy and the log-std bounds' penalty."""
        # [E, B, ...] inputs: each member its own bootstrap rows, still one batched pass.
        mean, log_std, cost_logit, term_logit = self(batch.obs[rows], batch.act[rows])
        target = self.targets(batch)[rows]
        nll = (((mean - target) / log_std.exp()) ** 2 / 2 + log_std).mean()
        cost = F.binary_cross_entropy_with_logits(cost_logit, batch.cost[rows])
        terminal = F.binary_cross_entropy_with_logits(term_logit, batch.terminal[rows])
        bounds = 0.01 * (self.max_log_std.sum() - self.min_log_std.sum())
        return nll + cost + terminal + bounds

    @torch.no_grad()
    def disagreement(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """MOPO's uncertainty u(s, a) [B], in normalised units: the norm of the elites' spread
        (std across their mean predictions). Not MOPO's max predicted std: with bounded log-stds
        that one barely moves off the data (tests/test_dynamics.py: 1.3x at six times the data's
        range, where the spread of the means grew 53x)."""
        mean, _, _, _ = self(obs, act)
        return mean[self.elite_index].std(dim=0, unbiased=False).norm(dim=-1)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step per row: an elite drawn at random per row, its Gaussian sampled.
        Returns s', r, the chance of a cost and the chance the episode ends there."""
        mean, log_std, cost_logit, term_logit = self(obs, act)
        b = obs.shape[0]
        pick = self.elite_index[torch.randint(len(self.elite_index), (b,), generator=generator)]
        rows = torch.arange(b)
        noise = torch.randn(b, self.gauss_dim, generator=generator)
        sample = mean[pick, rows] + log_std[pick, rows].exp() * noise
        next_obs = obs + sample[:, :-1] * self.delta_std + self.delta_mean
        reward = sample[:, -1] * self.reward_std + self.reward_mean
        return next_obs, reward, torch.sigmoid(cost_logit[pick, rows]), torch.sigmoid(term_logit[pick, rows])

    def rsample(self, obs: torch.Tensor, act: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step`'s draw of s' and r, reparameterised (mean + std * noise of a random elite per row),
        so that it is differentiable in the model's parameters: ARMOR's adversary learns through it."""
        mean, log_std, _, _ = self(obs, act)
        member = self.elite_index[torch.randint(len(self.elite_index), (obs.shape[0],), generator=generator)]
        at = (member, torch.arange(obs.shape[0]))
        draw = torch.addcmul(mean[at], log_std[at].exp(), torch.randn(mean[at].shape, generator=generator))
        return obs + draw[:, :-1] * self.delta_std + self.delta_mean, draw[:, -1] * self.reward_std + self.reward_mean


def split_rows(n: int, holdout: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out row indices (a random split; `holdout` of the rows are held out)."""
    perm = torch.randperm(n, generator=generator)
    cut = max(1, int(round(n * holdout)))
    return perm[cut:], perm[:cut]


def fit_dynamics(model: DynamicsEnsemble, data: Transitions, steps: int = 2000, batch_size: int = 256,
                 lr: float = 1e-3, holdout: float = 0.1, seed: int = 0, progress=None) -> HeldOutError:
    """Train every member on its bootstrap of the training rows, pick the elites by held-out
    error, and return the held-out one-step error against the trivial predictors."""
    g = torch.Generator().manual_seed(seed)
    train, held = split_rows(len(data.obs), holdout, g)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    for step in range(steps):
        # Step 1: a bootstrap draw per member (rows of the training split, with replacement).
        rows = train[torch.randint(len(train), (model.members, batch_size), generator=g)]
        # Step 2: every member's likelihood on its own rows, one batched pass.
        loss = model.loss(data, rows)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step + 1, float(loss))
    model.eval()
    choose_elites(model, data.select(held))
    return held_out_error(model, data.select(train), data.select(held))


@torch.no_grad()
def member_errors(model: DynamicsEnsemble, held: Transitions) -> torch.Tensor:
    """Each member's mean squared error of s' (normalised) on `held`, [E]."""
    mean, _, _, _ = model(held.obs, held.act)
    return ((mean[..., :-1] - model.targets(held)[:, :-1]) ** 2).mean(dim=(1, 2))


@torch.no_grad()
def choose_elites(model: DynamicsEnsemble, held: Transitions) -> None:
    """The members with the lowest held-out error roll out; the others only trained."""
    model.elite_index.copy_(torch.argsort(member_errors(model, held))[:len(model.elite_index)])


@torch.no_grad()
def held_out_error(model: DynamicsEnsemble, fitted_on: Transitions, held: Transitions) -> HeldOutError:
    """The elites' one-step error on `held` (rows no member trained on), against the trivial
    predictors built from `fitted_on`."""
    elites = model.elite_index
    mean, _, cost_logit, _ = model(held.obs, held.act)
    target = model.targets(held)
    mean_e = mean[elites].mean(0)
    no_change = (((-model.delta_mean) / model.delta_std - target[:, :-1]) ** 2).mean()  # s' = s, normalised
    reward_fit = model.targets(fitted_on)[:, -1]
    cost_p = torch.sigmoid(cost_logit[elites]).mean(0)
    return HeldOutError(
        next_obs_mse=float(((mean_e[:, :-1] - target[:, :-1]) ** 2).mean()),
        next_obs_mse_no_change=float(no_change),
        reward_mse=float(((mean_e[:, -1] - target[:, -1]) ** 2).mean()),
        reward_mse_mean=float(((reward_fit.mean() - target[:, -1]) ** 2).mean()),
        cost_brier=float(((cost_p - held.cost) ** 2).mean()),
        cost_brier_base_rate=float(((fitted_on.cost.mean() - held.cost) ** 2).mean()),
        member_next_obs_mse=tuple(float(v) for v in member_errors(model, held)),
        elites=tuple(int(i) for i in elites),
    )
