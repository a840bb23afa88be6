"""One gradient step of each part of the stack. Pure functions of (model, batch, optimisers).

The critic step evaluates every Q_R and Q_C member on the data action and all 3N
sampled actions in a single batched forward pass; the actor step then reuses the
critic with its weights frozen (no weight gradients computed for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from safecritic.configs.schema import Config
from safecritic.controller.model import SafeCriticModel
from safecritic.critics.cql import bellman_loss, cql_gap, sample_actions, task_target
from safecritic.critics.csc import accident_bellman_loss, accident_target, push_up_gap
from safecritic.critics.ood import DetectorLossConfig, detector_loss


@dataclass
class Batch:
    """Normalised observations, unit-box actions, rewards, costs, terminal flags."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    cost: torch.Tensor
    next_obs: torch.Tensor
    terminal: torch.Tensor


class TrainTensors:
    """The training split, normalised once, with seeded batch sampling."""

    def __init__(self, model: SafeCriticModel, obs, act, rew, cost, next_obs, terminal) -> None:
        with torch.no_grad():
            self.obs = model.normalize_obs(obs)
            self.next_obs = model.normalize_obs(next_obs)
            self.act = model.to_unit_action(act)
        self.rew, self.cost, self.terminal = rew, cost, terminal

    def __len__(self) -> int:
        return self.obs.shape[0]

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.cost[idx], self.next_obs[idx], self.terminal[idx])


def detector_loss_config(config: Config) -> DetectorLossConfig:
    o = config.critics.ood
    return DetectorLossConfig(
        o.uniform_negatives, o.perturb_scales, o.perturb_negatives, o.batch_negatives,
        o.nce_weight, o.state_noise, o.box_widen,
    )


def prior_step(model: SafeCriticModel, batch: Batch, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Maximum likelihood of the data actions under the mixture prior."""
    nll = -model.prior.log_prob(batch.obs, batch.act).mean()
    opt.zero_grad(set_to_none=True)
    nll.backward()
    opt.step()
    return {"prior_nll": nll.detach()}


def detector_step(
    model: SafeCriticModel, batch: Batch, opt: torch.optim.Optimizer, cfg: DetectorLossConfig, g: torch.Generator
) -> dict[str, torch.Tensor]:
    loss, metrics = detector_loss(model.detector, batch.obs, batch.act, cfg, g)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"ood_loss": loss.detach(), **metrics}


@dataclass
class ActorTerms:
    """What the actor's loss adds to SAC's: filled in by the constrained actor (controller/)."""

    cost_weight: torch.Tensor | None = None  # lambda_C
    kl_weight: torch.Tensor | None = None  # beta


def critic_actor_step(
    model: SafeCriticModel,
    batch: Batch,
    opt_critic: torch.optim.Optimizer,
    opt_actor: torch.optim.Optimizer,
    opt_temperature: torch.optim.Optimizer,
    config: Config,
    g: torch.Generator,
    target_entropy: float,
    curriculum: bool = False,
    terms: ActorTerms | None = None,
) -> dict[str, torch.Tensor]:
    """CQL(H) for Q_R, CSC for Q_C, then the SAC-style actor and its temperature."""
    c = config.critics
    n, (b, a_dim) = c.sampled_actions, batch.act.shape
    critic, has_cost = model.critic, model.critic.has_cost
    temperature = model.log_temperature.exp().detach()
    out: dict[str, torch.Tensor] = {}

    with torch.no_grad():
        pi_s = model.actor.sample(batch.obs, n, g)
        pi_next = model.actor.sample(batch.next_obs, n, g)
        q_next, cost_next = model.critic_target(batch.next_obs, pi_next[0][0])
        y_task = task_target(
            batch.rew, batch.terminal, q_next, c.gamma,
            pi_next[1][0] if c.task.backup_entropy else None, temperature,
        )
        if has_cost:
            y_cost = accident_target(
                batch.cost, batch.terminal, critic.cost_value(cost_next), c.accident.gamma, critic.cost_q_max
            )
        sampled = sample_actions(pi_s, pi_next, n, b, a_dim, g)
        log_weight = None
        if curriculum:
            # Contrastive curriculum: push down only what the detector calls OOD.
            score = model.detector.score(batch.obs.unsqueeze(0), sampled.actions)
            spread = model.ood_spread * c.task.curriculum_temperature
            log_weight = F.logsigmoid((score - model.ood_tau) / spread)
            out["curriculum_weight"] = log_weight.exp().mean()

    actions = torch.cat([batch.act.unsqueeze(0), sampled.actions], dim=0)  # [1 + 3N, B, A]
    q_task, cost_logits = critic(batch.obs, actions)
    q_data = q_task[:, 0]
    gap = cql_gap(q_data, q_task[:, 1:], sampled.log_density, log_weight)
    alpha = model.cql_alpha.get()
    loss_task = bellman_loss(q_data, y_task)
    loss = loss_task + alpha * gap.sum()
    out.update(q_task_loss=loss_task.detach(), cql_gap=gap.mean().detach(), cql_alpha=alpha.clone(),
               q_task_data=q_data.mean().detach(), q_task_target=y_task.mean())
    if has_cost:
        q_cost = critic.cost_value(cost_logits)
        loss_cost = accident_bellman_loss(cost_logits[:, 0], y_cost, critic.cost_q_max)
        push = push_up_gap(q_cost[:, 0], q_cost[:, 1 + sampled.off_data.start : 1 + sampled.off_data.stop])
        loss = loss + loss_cost + c.accident.alpha * push.sum()
        out.update(q_cost_loss=loss_cost.detach(), csc_gap=push.mean().detach(),
                   q_cost_data=q_cost[:, 0].mean().detach(),
                   q_cost_off=q_cost[:, 1 : 1 + sampled.off_data.stop].mean().detach())
    opt_critic.zero_grad(set_to_none=True)
    loss.backward()
    opt_critic.step()
    out["critic_loss"] = loss.detach()
    if config.critics.task.alpha_mode == "lagrangian":
        model.cql_alpha.update(gap.mean().detach() - c.task.target_gap)

    # Actor: gradients flow through the frozen critic into the action only.
    critic.requires_grad_(False)
    act_new, logp_new = model.actor.sample(batch.obs, 1, g)
    act_new, logp_new = act_new[0], logp_new[0]
    q_new, cost_new = critic(batch.obs, act_new)
    actor_loss = temperature * logp_new - q_new.min(dim=0).values
    if terms is not None and terms.cost_weight is not None and cost_new is not None:
        q_cost_new = critic.cost_value(cost_new).max(dim=0).values
        actor_loss = actor_loss + terms.cost_weight * q_cost_new
        out["actor_q_cost"] = q_cost_new.mean().detach()
    if terms is not None and terms.kl_weight is not None:
        kl = logp_new - model.prior.log_prob(batch.obs, act_new)
        actor_loss = actor_loss + terms.kl_weight * kl
        out["actor_kl"] = kl.mean().detach()
    actor_loss = actor_loss.mean()
    opt_actor.zero_grad(set_to_none=True)
    actor_loss.backward()
    opt_actor.step()
    critic.requires_grad_(True)

    temp_loss = -(model.log_temperature * (logp_new.detach() + target_entropy)).mean()
    opt_temperature.zero_grad(set_to_none=True)
    temp_loss.backward()
    opt_temperature.step()

    with torch.no_grad():
        torch._foreach_lerp_(
            list(model.critic_target.parameters()), list(critic.parameters()), c.tau
        )
    out.update(actor_loss=actor_loss.detach(), entropy=-logp_new.mean().detach(), temperature=temperature)
    return out
