"""Plain CQL(H) with a tanh-Gaussian SAC actor, built from the product's pieces: the "ours" side
of bench/vs_d3rlpy.py (and the plain-CQL row of bench/throughput.py).

The product no longer trains a SAC actor (its actor is a Gaussian mixture fitted in-sample,
controller/update.py), so the comparison with d3rlpy's CQL at the same hyperparameters is
built here, with the op structure the product's update had for this configuration before
the refactor (2f32c28: controller/updates.py with the accident critic, the constraints and
the twin actor off, `critics.task.backup_action=mean`, no entropy in the backup, fixed alpha):

1. `policy_at`: one actor pass over s and s' (no gradient), under bf16 autocast where
   `precision` allows;
2. `targets`: r + gamma (1 - terminal) min_e Q'(s', tanh(mu(s'))): the mean-action backup,
   no entropy term (d3rlpy's CQL: soft_q_backup=False);
3. `critic_step`: every member on the data action and 3N sampled actions (uniform, pi(s),
   pi(s'), each corrected by its log-density) in one batched pass of the product's
   QEnsemble (critics/q_ensemble.py, no cost heads), Bellman error + alpha * CQL gap
   (critics/cql.py), one backward, fused Adam (controller/training.adam);
4. `actor_step`: SAC's loss temperature * log pi - min_e Q(s, a), a ~ pi(s) reparameterised,
   through the critic with its weights frozen (no weight gradients computed for it), and
   the temperature's loss (automatic entropy tuning, target -|A|) in the same backward;
5. `polyak`: the target critic (the product's `polyak`).

Batches come from the product's TrainTensors (controller/update.py); the networks see the
raw observation normalised with the training split's statistics (no task features:
d3rlpy sees the raw observation too) and actions in [-1, 1]^A.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from safecritic.controller.training import adam
from safecritic.controller.update import Batch, TrainTensors, polyak
from safecritic.critics.cpu import autocast, tune_cpu, use_bf16
from safecritic.critics.cql import bellman_loss, cql_gap, sample_actions, task_target
from safecritic.critics.networks import MLP, Normalizer
from safecritic.critics.q_ensemble import QEnsemble
from safecritic.envs.dataset import OfflineData

# d3rlpy 2.8.1's CQL defaults (REFERENCES.md) with a fixed alpha: the shared hyperparameters of
# bench/vs_d3rlpy.py (which hands the same dict to d3rlpy's worker) and bench/throughput.py.
D3RLPY_HP = {"hidden": [256, 256], "critics": 2, "batch_size": 256, "gamma": 0.99, "tau": 0.005, "actor_lr": 1e-4,
             "critic_lr": 3e-4, "temp_lr": 1e-4, "temperature": 1.0, "alpha": 5.0, "samples": 10, "threads": 2, "seed": 0}

# d3rlpy/CORL's clamp upper bound (2), with a floor that keeps log-probs finite (the old product actor's).
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _tanh_log_det(pre: torch.Tensor) -> torch.Tensor:
    """log |d tanh(x)/dx| = log(1 - tanh(x)^2), computed stably, summed over the last dim."""
    return (2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)


class TanhGaussianActor(nn.Module):
    """a = tanh(mu(s) + sigma(s) * eps): the SAC policy head."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = MLP(obs_dim, hidden, 2 * act_dim)
        self.log_std_min, self.log_std_max = LOG_STD_MIN, LOG_STD_MAX  # attributes: TorchScript-visible

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log-std, [B, A] each (fp32 also under bf16 autocast)."""
        mean, log_std = self.net(obs).float().chunk(2, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n reparameterised samples per state: actions [n, B, A], log-probs [n, B]."""
        return self.sample_from(*self.forward(obs), n, generator)

    @staticmethod
    def sample_from(mean: torch.Tensor, log_std: torch.Tensor, n: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`sample` from an already computed forward (the critic step also needs the mean)."""
        eps = torch.randn((n, *mean.shape), generator=generator)
        pre = mean + log_std.exp() * eps
        logp = (-0.5 * eps.pow(2) - log_std - HALF_LOG_2PI).sum(-1) - _tanh_log_det(pre)
        return torch.tanh(pre), logp


class PlainCQLModel(nn.Module):
    """Normaliser (raw observation, no task features), SAC actor and its temperature, critic + target.

    Has what the product's TrainTensors and `polyak` read of a model: `normalize_obs`,
    `to_unit_action`, `critic`, `critic_target`."""

    def __init__(self, data: OfflineData, hp: dict) -> None:
        super().__init__()
        o, a = data.train.obs_dim, data.train.act_dim
        self.obs_norm = Normalizer(data.stats.mean, data.stats.std)  # the training split's statistics
        self.register_buffer("act_low", torch.tensor(data.info.act_low, dtype=torch.float32))
        self.register_buffer("act_high", torch.tensor(data.info.act_high, dtype=torch.float32))
        self.critic = QEnsemble(o, a, hp["hidden"], hp["critics"], cost_heads=0)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = TanhGaussianActor(o, a, hp["hidden"])
        self.log_temperature = nn.Parameter(torch.tensor(float(hp["temperature"])).log())

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_norm(obs)

    def to_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        """Env action -> [-1, 1]^A."""
        return (2.0 * (act - self.act_low) / (self.act_high - self.act_low) - 1.0).clamp(-1.0, 1.0)

    def from_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        return self.act_low + (act + 1.0) * 0.5 * (self.act_high - self.act_low)


class DeterministicPolicy(nn.Module):
    """Raw observations [B, D] -> (tanh of the actor's mean in env units [B, A], an empty record [B, 0]):
    the controller interface of controller/evaluation.rollout_policy. TorchScript-able
    (bench/vs_d3rlpy.py saves it beside d3rlpy's policy for bench/quality.py)."""

    def __init__(self, model: PlainCQLModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, _ = self.model.actor(self.model.normalize_obs(obs))
        return self.model.from_unit_action(torch.tanh(mean)), obs.new_zeros(obs.shape[0], 0)


class PlainCQLUpdate:
    """One plain-CQL update, as named steps (the product's Update's shape)."""

    def __init__(self, model: PlainCQLModel, hp: dict, optimizers: dict[str, torch.optim.Optimizer],
                 generator: torch.Generator, bf16: bool) -> None:
        self.model, self.hp, self.opt, self.g, self.bf16 = model, hp, optimizers, generator, bf16
        self.target_entropy = -float(model.act_low.numel())

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        mean, log_std = self.policy_at(batch)
        b = batch.obs.shape[0]
        target = self.targets(batch, mean[b:])
        out = self.critic_step(batch, mean, log_std, target)
        out.update(self.actor_step(batch))
        polyak(self.model, self.hp["tau"])
        return out

    def policy_at(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One actor pass over s and s' (pre-tanh means and log-stds [2B, A])."""
        with torch.no_grad(), autocast(self.bf16):
            return self.model.actor(torch.cat([batch.obs, batch.next_obs]))

    def targets(self, batch: Batch, mean_next: torch.Tensor) -> torch.Tensor:
        """r + gamma (1 - terminal) min_e Q'(s', tanh(mu(s'))), no entropy term."""
        with torch.no_grad(), autocast(self.bf16):
            q_next, _ = self.model.critic_target(batch.next_obs, torch.tanh(mean_next).unsqueeze(0))
        return task_target(batch.rew, batch.terminal, q_next[:, 0], self.hp["gamma"])

    def critic_step(self, batch: Batch, mean: torch.Tensor, log_std: torch.Tensor,
                    target: torch.Tensor) -> dict[str, torch.Tensor]:
        """CQL(H): Bellman error on the data action + alpha (logsumexp over 3N sampled actions - Q on data)."""
        n, (b, a_dim) = self.hp["samples"], batch.act.shape
        with torch.no_grad(), autocast(self.bf16):
            pi_s = TanhGaussianActor.sample_from(mean[:b], log_std[:b], n, self.g)
            pi_next = TanhGaussianActor.sample_from(mean[b:], log_std[b:], n, self.g)
            sampled = sample_actions(pi_s, pi_next, n, b, a_dim, self.g)
        actions = torch.cat([batch.act.unsqueeze(0), sampled.actions], dim=0)  # [1 + 3N, B, A]
        with autocast(self.bf16):
            q_task, _ = self.model.critic(batch.obs, actions)
        q_data = q_task[:, 0]
        gap = cql_gap(q_data, q_task[:, 1:], sampled.log_density)
        bellman = bellman_loss(q_data, target)
        loss = bellman + self.hp["alpha"] * gap.sum()
        _step([self.opt["critic"]], loss)
        return {"q_task_loss": bellman.detach(), "cql_gap": gap.mean().detach(), "q_task_data": q_data.mean().detach(),
                "q_task_target": target.mean(), "critic_loss": loss.detach()}

    def actor_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """SAC's actor and temperature losses in one backward, through the frozen critic."""
        m = self.model
        m.critic.requires_grad_(False)
        with autocast(self.bf16):
            act, logp = m.actor.sample(batch.obs, 1, self.g)
            q_task, _ = m.critic(batch.obs, act)  # [E, 1, B]
        q_min, logp = q_task.min(dim=0).values[0], logp[0]
        temperature = m.log_temperature.exp().detach()
        actor_loss = (temperature * logp - q_min).mean()
        # The temperature's loss sees log pi detached, the actor's the temperature detached: one backward.
        temperature_loss = -(m.log_temperature * (logp.detach() + self.target_entropy)).mean()
        _step([self.opt["actor"], self.opt["temperature"]], torch.stack([actor_loss, temperature_loss]).sum())
        m.critic.requires_grad_(True)
        return {"actor_loss": actor_loss.detach(), "actor_entropy": -logp.mean().detach(),
                "actor_q_task": q_min.mean().detach(), "actor_temperature": temperature}


def _step(optimizers: list[torch.optim.Optimizer], loss: torch.Tensor) -> None:
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()


class PlainCQL:
    """Trainer-like: `update_step()` returns the update closure (sample a batch + one update) that
    bench/ times and counts (bench/steps.py) exactly as it does the product's Trainer's;
    `policy()` is the deterministic policy for rollouts."""

    def __init__(self, data: OfflineData, hp: dict | None = None, precision: str = "auto") -> None:
        self.hp = dict(D3RLPY_HP if hp is None else hp)
        self.bf16 = use_bf16(precision)
        tune_cpu(self.hp["threads"])
        torch.manual_seed(self.hp["seed"])
        self.model = m = PlainCQLModel(data, self.hp)
        tr = data.train
        self.tensors = TrainTensors(m, tr.obs, tr.act, tr.rew, tr.cost, tr.next_obs, tr.terminal)
        self.optimizers = {"critic": adam(m.critic.parameters(), self.hp["critic_lr"]),
                           "actor": adam(m.actor.parameters(), self.hp["actor_lr"]),
                           "temperature": adam([m.log_temperature], self.hp["temp_lr"])}
        self.generator = torch.Generator().manual_seed(self.hp["seed"])

    def update_step(self) -> Callable[[], dict[str, torch.Tensor]]:
        update = PlainCQLUpdate(self.model, self.hp, self.optimizers, self.generator, self.bf16)
        batch_size = self.hp["batch_size"]

        def step() -> dict[str, torch.Tensor]:
            return update(self.tensors.sample(batch_size, self.generator))

        return step

    def policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.model).eval()
