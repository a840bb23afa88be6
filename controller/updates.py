"""One gradient step of each part of the stack. Pure functions of (model, batch, optimisers).

The critic step evaluates every Q_R and Q_C member on the data action and all 3N
sampled actions in a single batched forward pass; the actor step then reuses the
critic with its weights frozen (no weight gradients computed for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from safecritic.configs.schema import Config
from safecritic.controller.model import SafeCriticModel
from safecritic.controller.policies import MixturePrior, TanhGaussianActor
from safecritic.critics.cpu import autocast, use_bf16
from safecritic.critics.cql import bellman_loss, cql_gap, sample_actions, task_target
from safecritic.critics.csc import accident_bellman_loss, accident_target, push_up_gap
from safecritic.critics.ood import DetectorLossConfig, detector_loss
from safecritic.envs.dataset import NStep


class PriorParams(NamedTuple):
    """pi_beta's mixture parameters at a set of states: log-weights [N, K], means and log-stds [N, K, A]."""

    log_w: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor

    def select(self, index: torch.Tensor) -> "PriorParams":
        return PriorParams(self.log_w[index], self.mean[index], self.log_std[index])


@dataclass
class Batch:
    """Normalised observations, unit-box actions, rewards, costs, terminal flags."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    cost: torch.Tensor
    next_obs: torch.Tensor
    terminal: torch.Tensor
    # Rows [0, uniform_rows) are drawn uniformly from the data, the rest from the approaches
    # to accidents; constraints "over dataset states" are measured on the uniform rows only.
    uniform_rows: int | None = None
    # The data's discounted return-to-go at each row (critics.task.mc_lower_bound), or None.
    mc_return: torch.Tensor | None = None
    # Q_R's n-step backups (critics.task.n_step > 1), next observations normalised, or None.
    n_step: NStep | None = None
    # pi_beta's parameters at obs and next_obs, read from TrainTensors' cache (None: computed
    # by the caller from the prior, as during the prior's own training).
    prior: PriorParams | None = None  # the KL term's prior (policy.constraints.kl_prior) at obs
    prior_next: PriorParams | None = None

    def prior_log_prob(self, prior: MixturePrior, act: torch.Tensor) -> torch.Tensor:
        """log prior(act | obs), from the cached parameters where present (the cache holds the KL term's prior)."""
        return prior.log_density(*self.prior, act) if self.prior is not None else prior.log_prob(self.obs, act)

    def prior_next_candidates(self, prior: MixturePrior) -> torch.Tensor:
        """pi_beta's component means at next_obs [B, K, A], from the cache where present."""
        return self.prior_next.mean if self.prior_next is not None else prior.candidates(self.next_obs)


class TrainTensors:
    """The training split, normalised once, with seeded batch sampling.

    `rare` holds the indices of the transitions that lead up to an accident; critic
    batches can draw a fixed fraction from them (`sample(..., rare_fraction=...)`).
    """

    def __init__(self, model: SafeCriticModel, obs, act, rew, cost, next_obs, terminal,
                 rare: torch.Tensor | None = None, mc_return: torch.Tensor | None = None,
                 n_step: NStep | None = None) -> None:
        with torch.no_grad():
            self.obs = model.normalize_obs(obs)
            self.next_obs = model.normalize_obs(next_obs)
            self.act = model.to_unit_action(act)
        self.rew, self.cost, self.terminal = rew, cost, terminal
        self.rare = rare if rare is not None else torch.zeros(0, dtype=torch.long)
        self.mc_return = mc_return
        if n_step is not None:
            with torch.no_grad():
                n_step = NStep(n_step.rew, model.normalize_obs(n_step.next_obs), n_step.terminal, n_step.discount)
        self.n_step = n_step
        self.prior_obs: PriorParams | None = None
        self.prior_next_obs: PriorParams | None = None

    def cache_prior(self, prior: MixturePrior, bf16: bool, chunk: int = 4096, kl_prior: MixturePrior | None = None) -> None:
        """Compute pi_beta's parameters at every state and next state once. The prior is frozen
        after pretraining and the critic phase needs them twice per update (the actor's KL
        term, the safest backup's candidates): ~0.7 of ~14 ms per update, 2 cores. At the
        states, the KL term's prior (`kl_prior`, default pi_beta) is cached instead.

        Each in the precision its user computed it in before the cache, so training stays
        bit-identical: the KL term in fp32, the backup's candidates under the critic step's
        autocast (`bf16`)."""
        def params(of: MixturePrior, x: torch.Tensor) -> PriorParams:
            parts = [of.params(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
            return PriorParams(*(torch.cat(p) for p in zip(*parts)))

        with torch.no_grad():
            self.prior_obs = params(kl_prior if kl_prior is not None else prior, self.obs)
            with autocast(bf16):
                self.prior_next_obs = params(prior, self.next_obs)

    def __len__(self) -> int:
        return self.obs.shape[0]

    def draw(self, n: int, generator: torch.Generator, rows: torch.Tensor | None = None) -> torch.Tensor:
        """n uniform row indices (from `rows` only, when given)."""
        if rows is None:
            return torch.randint(0, len(self), (n,), generator=generator)
        return rows[torch.randint(0, len(rows), (n,), generator=generator)]

    def sample(self, batch_size: int, generator: torch.Generator, rare_fraction: float = 0.0,
               rows: torch.Tensor | None = None) -> Batch:
        """A uniform batch (from `rows` only, when given), `rare_fraction` of it from the approaches to accidents."""
        n_rare = int(round(rare_fraction * batch_size)) if len(self.rare) else 0
        idx = self.draw(batch_size - n_rare, generator, rows)
        if n_rare:
            pick = torch.randint(0, len(self.rare), (n_rare,), generator=generator)
            idx = torch.cat([idx, self.rare[pick]])
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.cost[idx], self.next_obs[idx], self.terminal[idx],
                     batch_size - n_rare, self.mc_return[idx] if self.mc_return is not None else None,
                     self.n_step.select(idx) if self.n_step is not None else None,
                     self.prior_obs.select(idx) if self.prior_obs is not None else None,
                     self.prior_next_obs.select(idx) if self.prior_next_obs is not None else None)


def blurred_batch(model: SafeCriticModel, raw_obs: torch.Tensor, act: torch.Tensor, idx: torch.Tensor,
                  entries: list[int], std: float, generator: torch.Generator) -> Batch:
    """Rows idx with Gaussian noise on the raw observation `entries`, then featurised and normalised
    (so derived features see the same noise), for pi_ref's fit (policy.prior.reference_noise_entries):
    a prior that cannot read the robot's own velocity exactly cannot just repeat its last action."""
    with torch.no_grad():
        raw = raw_obs[idx].clone()
        raw[:, entries] += std * torch.randn(len(idx), len(entries), generator=generator)
        return Batch(model.normalize_obs(raw), act[idx], None, None, None, None)  # type: ignore[arg-type]


def detector_loss_config(config: Config) -> DetectorLossConfig:
    o = config.critics.ood
    return DetectorLossConfig(
        o.uniform_negatives, o.perturb_scales, o.perturb_negatives, o.batch_negatives,
        o.nce_weight, o.state_noise, o.box_widen,
    )


def prior_step(prior: MixturePrior, batch: Batch, opt: torch.optim.Optimizer, name: str = "prior_nll") -> dict[str, torch.Tensor]:
    """Maximum likelihood of the data actions under the mixture prior (metric `name`)."""
    nll = -prior.log_prob(batch.obs, batch.act).mean()
    opt.zero_grad(set_to_none=True)
    nll.backward()
    opt.step()
    return {name: nll.detach()}


def detector_step(
    model: SafeCriticModel, batch: Batch, opt: torch.optim.Optimizer, cfg: DetectorLossConfig, g: torch.Generator,
    bf16: bool = False,
) -> dict[str, torch.Tensor]:
    """One contrastive step. Its 33 candidate actions per state make it matmul bound, so it
    follows run.precision like the critic phase (bf16: 13.6 -> 5.8 ms per step, 2 cores)."""
    with autocast(bf16):
        loss, metrics = detector_loss(model.detector, batch.obs, batch.act, cfg, g)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"ood_loss": loss.detach(), **metrics}


@dataclass
class ActorTerms:
    """The constraint terms of the actor's loss (None: plain SAC actor)."""

    cost_weight: torch.Tensor | None = None  # lambda_C
    kl_weight: torch.Tensor | None = None  # beta


def n_step_task_target(model: SafeCriticModel, n_step: NStep, backup_action: str, entropy: bool,
                       temperature: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """R_n + gamma^n (1 - terminal_n) min_e Q_target(s_{t+n}, a'), a' as in the one-step backup."""
    mean, log_std = model.actor(n_step.next_obs)
    if backup_action == "mean":
        action, logp = torch.tanh(mean).unsqueeze(0), None
    else:
        action, logp = model.actor.sample_from(mean, log_std, 1, g)
    q_next, _ = model.critic_target(n_step.next_obs, action)
    return task_target(n_step.rew, n_step.terminal, q_next[:, 0], n_step.discount,
                       logp[0] if entropy and logp is not None else None, temperature)


def gated_value(q_next: torch.Tensor, q_cost_next: torch.Tensor, cost_limit: float) -> torch.Tensor:
    """V(s') as the gate acts: the best pessimistic Q_R among candidates whose pessimistic Q_C
    is within the limit, else the safest candidate's. q_next, q_cost_next [E, K, B] -> [1, B]."""
    q_r = q_next.min(dim=0).values
    q_c = q_cost_next.max(dim=0).values
    admissible = q_c <= cost_limit
    best = torch.where(admissible, q_r, float("-inf")).max(dim=0).values
    safest = q_r.gather(0, q_c.argmin(dim=0, keepdim=True)).squeeze(0)
    return torch.where(admissible.any(dim=0), best, safest).unsqueeze(0)


def critic_step(
    model: SafeCriticModel,
    batch: Batch,
    opt_critic: torch.optim.Optimizer,
    config: Config,
    g: torch.Generator,
    curriculum: bool = False,
) -> dict[str, torch.Tensor]:
    """CQL(H) for Q_R and CSC for Q_C, every member on every action in one batched pass."""
    c = config.critics
    n, (b, a_dim) = c.sampled_actions, batch.act.shape
    critic, has_cost = model.critic, model.critic.has_cost
    temperature = model.log_temperature.exp().detach()
    out: dict[str, torch.Tensor] = {}
    bf16 = use_bf16(config.run.precision)

    with torch.no_grad(), autocast(bf16):
        # One actor pass over s and s' (samples at both, and the mean at s').
        mean, log_std = model.actor(torch.cat([batch.obs, batch.next_obs]))
        pi_s = model.actor.sample_from(mean[:b], log_std[:b], n, g)
        mean_next, log_std_next = mean[b:], log_std[b:]
        pi_next = model.actor.sample_from(mean_next, log_std_next, n, g)
        safest = has_cost and c.accident.backup == "safest"
        # Next actions for the targets: pi's first sample, or its mean under backup_action
        # 'mean' (Q_R's backup; Q_C's with backup 'actor'), plus, for backup 'safest', a
        # small deterministic subset of the gate's candidates at s' (actor mean, prior
        # modes, safe action). Deterministic and few on purpose: a minimum over many noisy
        # samples drifts optimistic as training goes on.
        mean_action = torch.tanh(mean_next).unsqueeze(0) if safest or c.task.backup_action == "mean" else None
        if c.task.backup_action == "reference":  # the schema guarantees pi_ref
            assert model.reference_prior is not None
            next_actions = model.reference_prior.mode(batch.next_obs).unsqueeze(0)
        else:
            next_actions = mean_action if c.task.backup_action == "mean" else pi_next[0][:1]
        if safest:
            backup = [mean_action, batch.prior_next_candidates(model.prior).transpose(0, 1)]
            if model.safe_action_unit is not None:
                backup.append(model.safe_action_unit.expand(1, b, a_dim))
            next_actions = torch.cat([next_actions, *backup], dim=0)
        q_next, cost_next = model.critic_target(batch.next_obs, next_actions)  # [E, K', B]
        q_cost_next = critic.cost_value(cost_next) if has_cost else None  # both targets may read it
        if c.task.n_step > 1:
            if batch.n_step is None:
                raise ValueError("critics.task.n_step > 1 needs batches with n-step backups (TrainTensors n_step)")
            y_task = n_step_task_target(model, batch.n_step, c.task.backup_action, c.task.backup_entropy, temperature, g)
        elif c.task.gated_backup:  # the schema guarantees the safest backup's candidates
            y_task = task_target(batch.rew, batch.terminal,
                                 gated_value(q_next, q_cost_next, c.task.gated_backup_cost_limit), c.gamma)
        else:
            y_task = task_target(
                batch.rew, batch.terminal, q_next[:, 0], c.gamma,
                pi_next[1][0] if c.task.backup_entropy else None, temperature,
            )
        if c.task.mc_lower_bound:
            if batch.mc_return is None:
                raise ValueError("critics.task.mc_lower_bound needs batches with the data's return-to-go (TrainTensors mc_return)")
            y_task = torch.maximum(y_task, batch.mc_return)
        if q_cost_next is not None:
            y_cost = accident_target(
                batch.cost, batch.terminal, q_cost_next[:, 1:] if safest else q_cost_next[:, 0],
                c.accident.gamma, critic.cost_q_max,
            )
        sampled = sample_actions(pi_s, pi_next, n, b, a_dim, g)
        log_weight = None
        if curriculum:
            # Contrastive curriculum: push down only what the detector calls OOD.
            score = model.ood_score(batch.obs.unsqueeze(0), sampled.actions)
            spread = model.ood_spread * c.task.curriculum_temperature
            log_weight = F.logsigmoid((score - model.ood_tau) / spread)
            out["curriculum_weight"] = log_weight.exp().mean()

    actions = torch.cat([batch.act.unsqueeze(0), sampled.actions], dim=0)  # [1 + 3N, B, A]
    with autocast(bf16):
        q_task, cost_logits = critic(batch.obs, actions)
    q_data = q_task[:, 0]
    # uniform_rows_only: Q_R sees the data as it is; only Q_C is fitted on the oversampled accident approaches.
    u = batch.uniform_rows if c.task.uniform_rows_only and batch.uniform_rows is not None else b
    gap = cql_gap(q_data[:, :u], q_task[:, 1:, :u], sampled.log_density[:, :u],
                  log_weight[:, :u] if log_weight is not None else None)
    loss_task = bellman_loss(q_data[:, :u], y_task[:u])
    alpha = model.cql_alpha.get()
    loss = loss_task + alpha * gap.sum()
    out.update(q_task_loss=loss_task.detach(), cql_gap=gap.mean().detach(), cql_alpha=alpha.clone(),
               q_task_data=q_data.mean().detach(), q_task_target=y_task.mean())
    if has_cost:
        q_cost = critic.cost_value(cost_logits)
        off = slice(1 + sampled.off_data.start, 1 + sampled.off_data.stop)
        loss_cost = accident_bellman_loss(cost_logits[:, 0], y_cost, critic.cost_q_max)
        push = push_up_gap(q_cost[:, 0], q_cost[:, off])
        loss = loss + loss_cost + c.accident.alpha * push.sum()
        out.update(q_cost_loss=loss_cost.detach(), csc_gap=push.mean().detach(),
                   q_cost_data=q_cost[:, 0].mean().detach(), q_cost_off=q_cost[:, off].mean().detach())
    opt_critic.zero_grad(set_to_none=True)
    loss.backward()
    opt_critic.step()
    out["critic_loss"] = loss.detach()
    if c.task.alpha_mode == "lagrangian":
        model.cql_alpha.update(gap.mean().detach() - c.task.target_gap)
    return out


@dataclass
class ActorUpdate:
    """One actor trained against the frozen critic: its optimisers and loss terms."""

    actor: TanhGaussianActor
    log_temperature: torch.Tensor
    opt_actor: torch.optim.Optimizer
    opt_temperature: torch.optim.Optimizer
    terms: ActorTerms
    prefix: str = "actor"


def actor_step(
    model: SafeCriticModel,
    updates: list[ActorUpdate],
    batch: Batch,
    g: torch.Generator,
    target_entropy: float,
    bf16: bool = False,
) -> dict[str, torch.Tensor]:
    """Each actor's loss: temperature log pi - min Q_R [+ lambda_C max Q_C + beta (log pi - log pi_beta)].

    Gradients flow through the frozen critic into the actions only (no weight gradients
    are computed for the critic). Several actors (the constrained one and its plain-CQL
    twin) share one critic pass and one backward: their parameters are disjoint, so the
    gradient of the summed losses is each actor's own gradient, at half the critic calls.
    """
    critic = model.critic
    out: dict[str, torch.Tensor] = {}
    critic.requires_grad_(False)
    with autocast(bf16):
        samples = [u.actor.sample(batch.obs, 1, g) for u in updates]
        q_task, cost_logits = critic(batch.obs, torch.cat([act for act, _ in samples]))  # [E, n_actors, B]
    q_min = q_task.min(dim=0).values
    q_cost = critic.cost_value(cost_logits).max(dim=0).values if cost_logits is not None else None
    losses: list[torch.Tensor] = []
    for i, (u, (act, logp)) in enumerate(zip(updates, samples)):
        act, logp, p = act[0], logp[0], u.prefix
        temperature = u.log_temperature.exp().detach()
        loss = temperature * logp - q_min[i]
        if q_cost is not None:
            # The dual variable sees E_D[Q_C(s, pi(s))] on uniformly drawn states: the oversampled
            # approaches to accidents would inflate it and pin lambda_C at its cap.
            out[f"{p}_q_cost"] = q_cost[i, : batch.uniform_rows].mean().detach()
            if u.terms.cost_weight is not None:
                loss = loss + u.terms.cost_weight * q_cost[i]
        if u.terms.kl_weight is not None:
            kl = logp - batch.prior_log_prob(model.kl_prior, act)
            loss = loss + u.terms.kl_weight * kl
            out[f"{p}_kl"] = kl.mean().detach()
        losses.append(loss.mean())
        out.update({f"{p}_loss": losses[-1].detach(), f"{p}_entropy": -logp.mean().detach(),
                    f"{p}_q_task": q_min[i].mean().detach(), f"{p}_temperature": temperature})
    # SAC's temperature losses see log pi detached, and the actor losses the temperature
    # detached: all of them go through one backward without mixing their gradients.
    losses += [-(u.log_temperature * (logp[0].detach() + target_entropy)).mean() for u, (_, logp) in zip(updates, samples)]
    optimizers = [opt for u in updates for opt in (u.opt_actor, u.opt_temperature)]
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    torch.stack(losses).sum().backward()
    for opt in optimizers:
        opt.step()
    critic.requires_grad_(True)
    return out


def update_duals(model: SafeCriticModel, config: Config, metrics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Projected ascent on lambda_C and beta from this step's constraint values."""
    k = config.policy.constraints
    if "actor_q_cost" in metrics:
        model.cost_multiplier.update(metrics["actor_q_cost"] - k.cost_limit)
    if "actor_kl" in metrics:
        model.kl_multiplier.update(metrics["actor_kl"] - k.kl_limit)
    return {"lambda_cost": model.cost_multiplier.get().clone(), "beta_kl": model.kl_multiplier.get().clone()}


def polyak(model: SafeCriticModel, tau: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(model.critic_target.parameters()), list(model.critic.parameters()), tau)
