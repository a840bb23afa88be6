"""The training updates, as named steps read top to bottom (like d3rlpy's `inner_update`).

Pretraining fits the priors and the OOD detector (`pretrain_update`); then every update
(`Update.__call__`) runs:

1. `policy_at`: one actor pass over s and s' (its samples feed the critics' terms);
2. `targets`: the Bellman targets at s' (Q_R, Q_C under the policy, Q_C of recovery);
3. `critic_step`: the task critic (CQL) and the accident critics (CSC) on one batched pass
   of the shared trunks, one backward;
4. `actor_step`: advantage-weighted maximum likelihood of the successful episodes' actions
   under the state-wise accident constraint (controller/constraint.py), and its unconstrained
   twin (the ablation that shows what the constraint earns);
5. `multipliers`: each state's Lagrange multiplier of that constraint, logged;
6. `polyak`: the target networks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterable, NamedTuple

import torch
from torch import nn

from safecritic.configs.schema import Config
from safecritic.controller.constraint import StateWiseConstraint, Weights, summarize_multipliers
from safecritic.controller.model import SafeCriticModel
from safecritic.controller.policies import MixtureParams, MixturePolicy, log_density, mode_index, pick
from safecritic.critics.cpu import autocast, use_bf16
from safecritic.critics.cql import bellman_loss, cql_gap, sample_actions, task_target
from safecritic.critics.csc import accident_bellman_loss, accident_target, push_up_gap
from safecritic.critics.ood import DetectorLossConfig, detector_loss
from safecritic.critics.q_ensemble import POLICY_RISK, RECOVERY_RISK



def adam(params: Iterable[torch.Tensor], lr: float, fused: bool = True) -> torch.optim.Adam:
    """Adam with torch's fused CPU kernel: one op per step instead of ~10 per parameter
    tensor. Our networks are small and their updates bound by per-op overhead, not FLOPs:
    +7-9% critic-phase updates/s on the default config (bench/optimizer_ab.py, which also
    builds the for-loop variant with fused=False)."""
    return torch.optim.Adam(params, lr=lr, fused=fused)


@dataclass
class Batch:
    """Normalised observations, unit-box actions, rewards, costs, terminal flags, and the frozen
    priors' parameters at these states (read from TrainTensors' cache)."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    cost: torch.Tensor
    next_obs: torch.Tensor
    terminal: torch.Tensor
    raw_obs: torch.Tensor | None = None  # the env's observations (the task's safe action reads them)
    raw_next_obs: torch.Tensor | None = None
    prior: MixtureParams | None = None  # pi_beta at obs
    prior_next: MixtureParams | None = None  # pi_beta at next_obs
    reference: MixtureParams | None = None  # pi_ref at obs


class TrainTensors:
    """The training split, normalised once, with seeded batch sampling.

    `rare` holds the indices of the transitions that lead up to a cost; critic batches
    draw a fixed fraction from them (critics.accident.oversample)."""

    def __init__(self, model: SafeCriticModel, obs, act, rew, cost, next_obs, terminal,
                 rare: torch.Tensor | None = None) -> None:
        with torch.no_grad():
            self.obs = model.normalize_obs(obs)
            self.next_obs = model.normalize_obs(next_obs)
            self.act = model.to_unit_action(act)
        self.rew, self.cost, self.terminal = rew, cost, terminal
        self.raw_obs, self.raw_next_obs = obs, next_obs
        self.rare = rare if rare is not None else torch.zeros(0, dtype=torch.long)
        self.prior_obs = self.prior_next_obs = self.reference_obs = None

    def cache_priors(self, model: SafeCriticModel, chunk: int = 4096) -> None:
        """The frozen priors' parameters at every state, once: they are fixed after pretraining,
        and every update needs pi_beta at s and s' and pi_ref at s."""
        def params(of: MixturePolicy, x: torch.Tensor) -> MixtureParams:
            parts = [of.params(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
            return MixtureParams(*(torch.cat(p) for p in zip(*parts)))

        with torch.no_grad():
            self.prior_obs, self.prior_next_obs = params(model.prior, self.obs), params(model.prior, self.next_obs)
            self.reference_obs = params(model.reference, self.obs)

    def __len__(self) -> int:
        return self.obs.shape[0]

    def draw(self, n: int, generator: torch.Generator, rows: torch.Tensor | None = None) -> torch.Tensor:
        """n uniform row indices (from `rows` only, when given)."""
        if rows is None:
            return torch.randint(0, len(self), (n,), generator=generator)
        return rows[torch.randint(0, len(rows), (n,), generator=generator)]

    def sample(self, batch_size: int, generator: torch.Generator, rare_fraction: float = 0.0,
               rows: torch.Tensor | None = None) -> Batch:
        """A uniform batch (from `rows` only, when given), `rare_fraction` of it from the approaches to costs."""
        n_rare = int(round(rare_fraction * batch_size)) if len(self.rare) else 0
        idx = self.draw(batch_size - n_rare, generator, rows)
        if n_rare:
            idx = torch.cat([idx, self.rare[torch.randint(0, len(self.rare), (n_rare,), generator=generator)]])
        return self.rows(idx)

    def rows(self, idx: torch.Tensor) -> Batch:
        """The batch of these row indices."""
        cached = [None if p is None else p.select(idx) for p in (self.prior_obs, self.prior_next_obs, self.reference_obs)]
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.cost[idx], self.next_obs[idx],
                     self.terminal[idx], self.raw_obs[idx], self.raw_next_obs[idx], *cached)


def pretrain_update(model: SafeCriticModel, prior_batch: Batch | None, reference_batch: Batch | None,
                    detector_batch: Batch | None, optimizers: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator, bf16: bool) -> dict[str, torch.Tensor]:
    """One pretraining step: pi_beta on all the data, pi_ref on the successful episodes (maximum
    likelihood), the contrastive detector (its 33 candidate actions per state make it matmul
    bound, so it follows run.precision)."""
    out: dict[str, torch.Tensor] = {}
    for name, policy, batch in (("prior", model.prior, prior_batch), ("reference", model.reference, reference_batch)):
        if batch is not None:
            nll = -policy.log_prob(batch.obs, batch.act).mean()
            _step(optimizers[name], nll)
            out[f"{name}_nll"] = nll.detach()
    if detector_batch is not None:
        with autocast(bf16):
            loss, metrics = detector_loss(model.detector, detector_batch.obs, detector_batch.act, DetectorLossConfig(),
                                          generator)
        _step(optimizers["detector"], loss)
        out.update(ood_loss=loss.detach(), **metrics)
    return out


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class PolicyAt(NamedTuple):
    """The actor at the batch's states and next states (no gradient)."""

    s: MixtureParams
    next: MixtureParams
    mode_next: torch.Tensor  # [B, A]: the action the actor would take at s'


class Targets(NamedTuple):
    task: torch.Tensor  # [B]
    policy_risk: torch.Tensor | None  # [B]
    recovery_risk: torch.Tensor | None  # [B]


@dataclass(frozen=True)
class NoOptions:
    """The default learner's settings all live in the schema (policy.*, critics.*)."""


class Update:
    """One critic-phase update of a model; `bench/` times exactly this call.

    This is also the learner interface (controller/learners/): a learner is an Update subclass,
    picked by `policy.learner`, that states what its policy is (`build_actor`, a module with the
    mixture policy's `forward`/`params`/`mode`/`components`, so the gate and the exports take
    it as they take the default), where it starts (`start`), which parameters its optimiser
    moves, which rows its actor learns from, and its own settings (`Options`, filled from
    `policy.learner_options`). The critic side (CQL task critic, CSC accident critics) is the
    same for every learner unless it overrides a step."""

    name: ClassVar[str] = "csc"
    Options: ClassVar[type] = NoOptions
    actor_rows: ClassVar[str] = "successful"  # the actor's batch: the "successful" episodes, the "safe" ones (within
    # the cost budget, whatever their return), or "all" the data
    has_twin: ClassVar[bool] = True  # the unconstrained twin is trained (the `unconstrained` ablation)

    @classmethod
    def options(cls, config: Config) -> Any:
        """The learner's settings: its `Options` defaults, overridden by policy.learner_options."""
        given = dict(config.policy.learner_options)
        known = {f.name for f in fields(cls.Options)}
        unknown = sorted(set(given) - known)
        if unknown:
            from safecritic.configs.errors import ConfigError

            raise ConfigError(f"policy.learner_options has {', '.join(unknown)}, not a setting of the "
                              f"{cls.name!r} learner; its settings: {', '.join(sorted(known)) or 'none'}")
        return cls.Options(**given)

    @classmethod
    def build_actor(cls, model: SafeCriticModel, obs_dim: int, act_dim: int, config: Config) -> nn.Module:
        """The policy the gate proposes from (built inside the model, after its priors and critics)."""
        p = config.policy
        return MixturePolicy(obs_dim, act_dim, p.hidden, p.components)

    @classmethod
    def start(cls, model: SafeCriticModel) -> None:
        """After pretraining: the actor and its twin start as BC on the successful episodes (pi_ref)
        and improve on it under the critics; from scratch, the actor's own risk estimate is high
        everywhere and the constrained fit settles for minimising it (docs/design.md, "The actor")."""
        model.actor.load_state_dict(model.reference.state_dict())
        model.unconstrained.load_state_dict(model.reference.state_dict())

    @classmethod
    def optimizers(cls, model: SafeCriticModel, config: Config) -> dict[str, torch.optim.Optimizer]:
        """The learner's optimisers besides the priors', the detector's and the critic's."""
        return {"actor": adam([*model.actor.parameters(), *model.unconstrained.parameters()], config.policy.lr)}

    def __init__(self, model: SafeCriticModel, config: Config, optimizers: dict[str, torch.optim.Optimizer],
                 generator: torch.Generator, data: TrainTensors | None = None) -> None:
        self.model, self.config, self.opt, self.g = model, config, optimizers, generator
        self.data = data  # the training split (the model-based learners fit their dynamics to it)
        self.bf16 = use_bf16(config.run.precision)
        self.settings = self.options(config)
        self.task_alpha = config.critics.alpha  # CQL's weight; the policy-constraint learners fit plain TD (0)
        self.constraint = StateWiseConstraint(config.policy.cost_limit, config.policy.temperature)
        for frozen in (model.prior, model.reference, model.detector):
            frozen.requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        """What the update holds beyond the model, the optimisers and the generator (a model-based
        learner's imagined buffer), so a checkpoint carries it and a resume continues bit-exact."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"the {self.name!r} learner keeps no state of its own, got {sorted(state)}")

    def __call__(self, batch: Batch, actor_batch: Batch) -> dict[str, torch.Tensor]:
        """`batch`: the critics' (all the data, accident approaches oversampled); `actor_batch`: the
        successful episodes' transitions the actor is fitted to."""
        policy = self.policy_at(batch)
        targets = self.targets(batch, policy)
        out = self.critic_step(batch, policy, targets)
        values, metrics = self.actor_step(actor_batch)
        out.update(metrics)
        out.update(self.multipliers(*values))
        polyak(self.model, self.config.critics.tau)
        return out

    # 1. -------------------------------------------------------------------------------
    def policy_at(self, batch: Batch) -> PolicyAt:
        """One actor pass over s and s'."""
        b = batch.obs.shape[0]
        with torch.no_grad(), autocast(self.bf16):
            both = self.model.actor.params(torch.cat([batch.obs, batch.next_obs]))
        s, nxt = both.select(slice(0, b)), both.select(slice(b, None))
        return PolicyAt(s, nxt, pick(nxt.mean, mode_index(*nxt)))

    # 2. -------------------------------------------------------------------------------
    def targets(self, batch: Batch, policy: PolicyAt) -> Targets:
        """Q_R: r + gamma min_e Q_R'(s', a'), a' ~ pi(s'). Q_C under the policy: c + gamma_c max_e
        Q_C'(s', mode pi(s')), the risk of following the actor (CSC). Q_C of recovery: the same
        through the safest of a few deterministic candidates at s' (the actor's components, the
        prior's modes, the safe actions): the risk if the controller then acts as safely as it can."""
        m, c = self.model, self.config.critics
        with torch.no_grad(), autocast(self.bf16):
            sample_next, _ = MixturePolicy.sample(policy.next, 1, self.g)
            recovery = [policy.next.mean.transpose(0, 1), batch.prior_next.mean.transpose(0, 1),
                        m.safe_units(batch.raw_next_obs).unsqueeze(0)]
            next_actions = torch.cat([sample_next, policy.mode_next.unsqueeze(0), *recovery])  # [2 + K', B, A]
            q_next, cost_next = m.critic_target(batch.next_obs, next_actions)  # [E, 2 + K', B](, H)
        risk = None if cost_next is None else m.critic.cost_value(cost_next)
        task = self.task_backup(batch, q_next[:, 0], None if risk is None else risk[:, 0, :, POLICY_RISK])
        if risk is None:
            return Targets(task, None, None)
        q_max = m.critic.cost_q_max
        policy_risk = accident_target(batch.cost, batch.terminal, risk[:, 1, :, POLICY_RISK], c.accident.gamma, q_max)
        recovery_risk = accident_target(batch.cost, batch.terminal, risk[:, 1:, :, RECOVERY_RISK], c.accident.gamma, q_max)
        return Targets(task, policy_risk, recovery_risk)

    def task_backup(self, batch: Batch, q_next: torch.Tensor, risk_next: torch.Tensor | None) -> torch.Tensor:
        """Q_R's target from the members' Q_R' [E, B] and Q_C [E, B] at (s', a' ~ pi(s')): r + gamma
        min_e Q_R' (CPQ cuts it where a' is unsafe)."""
        return task_target(batch.rew, batch.terminal, q_next, self.config.critics.gamma)

    # 3. -------------------------------------------------------------------------------
    def critic_step(self, batch: Batch, policy: PolicyAt, targets: Targets) -> dict[str, torch.Tensor]:
        """CQL(H) for Q_R and CSC for both Q_C heads, one backward."""
        loss, out = self.critic_losses(batch, policy, targets)
        _step(self.opt["critic"], loss)
        out["critic_loss"] = loss.detach()
        return out

    def critic_losses(self, batch: Batch, policy: PolicyAt, targets: Targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """critic_step's loss: every member on the data action and the 3N sampled actions in one
        batched pass (a learner adds its own terms to it before the step)."""
        m, c = self.model, self.config.critics
        n, (b, a_dim) = c.sampled_actions, batch.act.shape
        with torch.no_grad(), autocast(self.bf16):
            sampled = sample_actions(MixturePolicy.sample(policy.s, n, self.g), MixturePolicy.sample(policy.next, n, self.g),
                                     n, b, a_dim, self.g)
        actions = torch.cat([batch.act.unsqueeze(0), sampled.actions], dim=0)  # [1 + 3N, B, A]
        with autocast(self.bf16):
            q_task, cost_logits = m.critic(batch.obs, actions)
        loss_task, out = task_critic_loss(q_task, targets.task, sampled, self.task_alpha)
        loss = loss_task
        if cost_logits is not None:
            loss_cost, metrics = accident_critic_loss(m, cost_logits, targets, sampled, c.accident.alpha)
            loss = loss + loss_cost
            out.update(metrics)
        return loss, out

    # 4. -------------------------------------------------------------------------------
    def candidates(self, batch: Batch) -> torch.Tensor:
        """The actions each state's constrained choice is among [C, B, A]: the data's action first, then
        pi_ref's component means and the safe actions (which decide whether the state is feasible)."""
        m = self.model
        return torch.cat([batch.act.unsqueeze(0), batch.reference.mean.transpose(0, 1),
                          m.safe_units(batch.raw_obs).unsqueeze(0), m.safe_action_unit.expand(1, *batch.act.shape)])

    def constraint_at(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, Weights, torch.Tensor]:
        """The candidates' Q_R and Q_C (under the policy), the constraint's weights of the data's
        actions, and which candidates are in the data's support (OOD score within tau)."""
        m = self.model
        cands = self.candidates(batch)
        with torch.no_grad(), autocast(self.bf16):
            q_task, cost_logits = m.critic(batch.obs, cands)
            in_support = m.ood_score(batch.obs, cands) <= m.ood_tau
        in_support[0] = True  # the data's own action is in the data
        q_r = q_task.float().min(dim=0).values  # [C, B]
        q_c = m.critic.cost_value(cost_logits.float()[..., POLICY_RISK].max(dim=0).values)
        return q_r, q_c, self.constraint.weights(q_r, q_c, in_support, self.baseline(batch, q_r)), in_support

    @staticmethod
    def baseline(batch: Batch, q_r: torch.Tensor) -> torch.Tensor:
        """The return the advantage is taken against [B]: pi_ref's value, its component means' Q_R
        (candidates 1..K) weighted by their mixture weights."""
        k = batch.reference.log_w.shape[1]
        return (batch.reference.log_w.exp().t() * q_r[1 : 1 + k]).sum(0)

    def actor_step(self, batch: Batch) -> tuple[tuple, dict[str, torch.Tensor]]:
        """Advantage-weighted maximum likelihood of the successful episodes' actions, each weighted by
        the state-wise constraint (inside the feasible set: exp(beta A_R) for actions within the budget,
        0 over it; outside: exp(-beta A_C)); the twin weights by exp(beta A_R) alone. Returns the
        candidates' values (for `multipliers`) and the metrics."""
        m = self.model
        q_r, q_c, w, in_support = self.constraint_at(batch)
        loss = weighted_nll(m.actor, batch, w.weights)
        loss_twin = weighted_nll(m.unconstrained, batch, w.unconstrained)
        _step(self.opt["actor"], loss + loss_twin)  # disjoint parameters: one backward, each its own gradient
        return (q_r, q_c, w, in_support), {"actor_loss": loss.detach(), "unconstrained_loss": loss_twin.detach(),
                                           "feasible": w.feasible.float().mean(),
                                           "kept": (w.weights > 0).float().mean()}

    # 5. -------------------------------------------------------------------------------
    def multipliers(self, q_r: torch.Tensor, q_c: torch.Tensor, w: Weights, in_support: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each state's Lagrange multiplier of the constraint (0 where it does not bind), summarised."""
        return summarize_multipliers(self.constraint.multipliers(q_r, q_c, w, in_support))


def weighted_nll(policy: MixturePolicy, batch: Batch, weights: torch.Tensor) -> torch.Tensor:
    """-sum_i w_i log pi(a_i | s_i) / sum_i w_i: the weighted maximum likelihood of the data's actions."""
    return -(weights * policy.log_prob(batch.obs, batch.act)).sum() / weights.sum().clamp_min(1e-6)


def task_critic_loss(q_task: torch.Tensor, target: torch.Tensor, sampled, alpha: float) -> tuple[torch.Tensor, dict]:
    """CQL(H): Bellman error on the data action + alpha (logsumexp over sampled actions - Q on data)."""
    q_data = q_task[:, 0]
    gap = cql_gap(q_data, q_task[:, 1:], sampled.log_density)
    bellman = bellman_loss(q_data, target)
    return bellman + alpha * gap.sum(), {"q_task_loss": bellman.detach(), "cql_gap": gap.mean().detach(),
                                         "q_task_data": q_data.mean().detach(), "q_task_target": target.mean()}


def accident_critic_loss(model: SafeCriticModel, cost_logits: torch.Tensor, targets: Targets, sampled,
                         alpha: float) -> tuple[torch.Tensor, dict]:
    """CSC for each Q_C head: cross-entropy to its target on the data action + alpha (E_D[Q_C] -
    E_mu[Q_C]), mu the uniform and policy samples: Q_C is pushed *up* off the data."""
    critic = model.critic
    off = slice(1 + sampled.off_data.start, 1 + sampled.off_data.stop)
    q_cost = critic.cost_value(cost_logits)
    loss, out = torch.zeros(()), {}
    for head, name, target in ((POLICY_RISK, "policy_risk", targets.policy_risk),
                               (RECOVERY_RISK, "recovery_risk", targets.recovery_risk)):
        bellman = accident_bellman_loss(cost_logits[:, 0, :, head], target)
        push = push_up_gap(q_cost[:, 0, :, head], q_cost[:, off, :, head])
        loss = loss + bellman + alpha * push.sum()
        out.update({f"{name}_loss": bellman.detach(), f"{name}_gap": push.mean().detach(),
                    f"{name}_data": q_cost[:, 0, :, head].mean().detach()})
    return loss, out


def polyak(model: SafeCriticModel, tau: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(model.critic_target.parameters()), list(model.critic.parameters()), tau)
