"""The gated controller: the policy proposes, the accident critic and the OOD detector veto.

One TorchScript-able module, deterministic (fixed candidate offsets, no runtime
randomness), taking raw observations [B, obs_dim] and returning

    action [B, act_dim]  clipped to the action bounds, never NaN
    record [B, 6]        decision code, Q_R, Q_C and OOD score of the chosen action,
                         then Q_C and OOD score of the policy's own proposal

Decision codes: 0 the policy's mean action, 1 another candidate, 2 fallback (nothing
admissible), 3 fault (non-finite observation or output: the safe action). Under the
'safe_action' fallback the record holds the safe candidate's values: what was executed.
The safe action is constant, or (gate.brake_velocity_indices) brakes against the observed
velocity: a constant zero force lets a body that is heavier or less damped than in the data
coast into a hazard (docs/design-notes.md, "The gate under faults"). Faults keep the constant.
The ranking is Q_R + beta log pi_ref, plus (gate.goal_approach) a known-reward term near the goal:
progress towards it, which the conservative Q_R undervalues (docs/design-notes.md, "The final approach").
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from safecritic.configs.schema import GateConfig
from safecritic.controller.model import SafeCriticModel
from safecritic.controller.policies import MixturePrior, TanhGaussianActor, fused_policy_pass
from safecritic.critics.ood import with_prior_term
from safecritic.critics.q_ensemble import pair_inputs

# The gate writes codes 0/1 as (chosen index != 0): keep policy = 0 and candidate = 1.
CODE_POLICY, CODE_CANDIDATE, CODE_FALLBACK, CODE_FAULT = 0, 1, 2, 3
DECISIONS = {CODE_POLICY: "policy", CODE_CANDIDATE: "other candidate", CODE_FALLBACK: "fallback", CODE_FAULT: "fault"}
# The record's columns; the export writes this layout into the manifest for the runtime.
RECORD_FIELDS = ["code", "q_task", "q_cost", "ood_score", "proposal_q_cost", "proposal_ood_score"]


def fixed_offsets(count: int, act_dim: int, scale: float, seed: int) -> torch.Tensor:
    """[count, act_dim] standard-normal offsets; row 0 is zero (the policy mean)."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randn(count, act_dim, generator=g) * scale
    offsets[0] = 0.0
    return offsets


def safe_action_of(model: SafeCriticModel, gate: GateConfig) -> torch.Tensor:
    if gate.safe_action is None:
        return (model.act_low + model.act_high) / 2
    action = torch.tensor(gate.safe_action, dtype=torch.float32)
    if action.shape != model.act_low.shape:
        from safecritic.configs.errors import ConfigError

        raise ConfigError(f"gate.safe_action has {action.numel()} entries; the action space has {model.act_low.numel()}")
    return torch.maximum(torch.minimum(action, model.act_high), model.act_low)


def observation_vector_indices(model: SafeCriticModel, entries: list[int] | None, setting: str, meaning: str,
                               example: str) -> torch.Tensor:
    """Observation entries that hold a vector with one component per action dimension (a velocity, the
    goal), as a long tensor (empty: unset), checked against the spaces."""
    if entries is None:
        return torch.zeros(0, dtype=torch.long)
    from safecritic.configs.errors import ConfigError

    act_dim = model.spec.act_dim
    if len(entries) != act_dim:
        raise ConfigError(f"{setting} has {len(entries)} entries; it needs one {meaning} entry of the observation "
                          f"per action dimension ({act_dim}), e.g. {example} for PointNav")
    model.spec.check_observation_entries(setting, entries,
                                         f"name the {meaning} entries of the observation (PointNav: {example}), or null")
    return torch.tensor(entries, dtype=torch.long)


class GatedController(nn.Module):
    """Candidates -> one batched pass of Q_R, Q_C, OOD score -> admissible -> best by Q_R."""

    def __init__(
        self,
        model: SafeCriticModel,
        gate: GateConfig,
        use_cost: bool = True,
        use_ood: bool = True,
        gate_enabled: bool = True,
        proposer: str = "actor",
    ) -> None:
        super().__init__()
        if not model.critic.has_cost and use_cost:
            raise ValueError("this run has no accident critic (critics.accident.enabled: false): use_cost=False")
        actor = model.actor if proposer == "actor" else model.plain_actor
        if actor is None:
            raise ValueError(f"the run has no {proposer!r} actor")
        self.features = copy.deepcopy(model.features)
        self.obs_norm = copy.deepcopy(model.obs_norm)
        self.actor: TanhGaussianActor = copy.deepcopy(actor)
        # pi_ref: the prior whose means are candidates and whose density ranks them (gate.reference).
        if gate.reference == "successful" and model.reference_prior is None:
            raise ValueError("gate.reference=successful, but this run has no reference prior (trained with "
                             "policy.prior.fit_successful=false): export with -o gate.reference=behaviour, or retrain")
        reference = model.reference_prior if gate.reference == "successful" else model.prior
        assert reference is not None
        self.reference: MixturePrior = copy.deepcopy(reference)
        # pi_beta, for the OOD score's prior term; a pass of its own only when it differs from pi_ref.
        self.prior: MixturePrior = copy.deepcopy(model.prior)
        self.ood_prior_scale = float(model.ood_prior_scale)  # the OOD score's prior term (model.ood_score)
        self.support_pass = gate.reference == "successful" and self.ood_prior_scale > 0.0
        # Actor and priors in one batched pass when their shapes allow (identical outputs to ~1e-7).
        fused = (fused_policy_pass(self.actor, self.reference, self.prior) if self.support_pass
                 else fused_policy_pass(self.actor, self.reference))
        self.fused = fused is not None
        self.policy_pass = fused if fused is not None else nn.Identity()
        act_dim = int(model.act_low.numel())
        self.actor_width = 2 * act_dim
        self.prior_width = int(self.prior.components * (1 + 2 * act_dim))
        self.value_dtype = torch.bfloat16 if gate.precision == "bf16" else torch.float32
        self.critic = copy.deepcopy(model.critic).to(self.value_dtype)
        self.critic.net.use_inference_head()  # the same values, a faster kernel for the 2-wide head
        self.detector = copy.deepcopy(model.detector).to(self.value_dtype)
        self.register_buffer("act_low", model.act_low.clone())
        self.register_buffer("act_high", model.act_high.clone())
        self.register_buffer("safe_action", safe_action_of(model, gate))
        # Precomputed so that a call spends no ops on constants (batch-1 latency is dominated
        # by the number of ops, ~1.5 µs each, not by FLOPs; docs/benchmarks.md).
        self.register_buffer("act_mid", (model.act_low + model.act_high) / 2)
        self.register_buffer("act_half", (model.act_high - model.act_low) / 2)
        self.register_buffer("safe_unit", (self.safe_action - self.act_mid) / self.act_half)
        # The braking backup: safe_action - brake_gain * velocity (gate.brake_velocity_indices), per state.
        self.register_buffer("brake_indices", observation_vector_indices(
            model, gate.brake_velocity_indices, "gate.brake_velocity_indices", "velocity", "[2, 3]"))
        self.braking = self.brake_indices.numel() > 0
        # In the unit box: safe_unit - (gain / half-range) * velocity, then clipped to [-1, 1] (three ops per call).
        self.register_buffer("brake_unit_gain", -float(gate.brake_gain) / self.act_half)
        # The goal approach (gate.goal_approach): + weight * progress towards the goal, within radius of it.
        approach = gate.goal_approach
        self.register_buffer("goal_indices", observation_vector_indices(
            model, approach.goal_indices if approach else None, "gate.goal_approach.goal_indices", "goal", "[4, 5]"))
        self.approaching = approach is not None and approach.weight > 0.0
        self.approach_weight = float(approach.weight) if approach else 0.0
        self.approach_radius = float(approach.radius) if approach else 0.0
        fault_record = torch.full((len(RECORD_FIELDS),), float("nan"))
        fault_record[0] = float(CODE_FAULT)
        self.register_buffer("fault_record", fault_record)
        self.register_buffer(
            "offsets", fixed_offsets(gate.policy_candidates, act_dim, gate.offset_scale, gate.seed).unsqueeze(1))
        self.register_buffer("cost_threshold", torch.tensor(float(gate.cost_threshold)))
        self.register_buffer("fallback_margin", torch.tensor(float(gate.fallback_margin)))
        self.register_buffer("ood_threshold", model.ood_tau.clone())
        self.use_cost, self.use_ood, self.gate_enabled = use_cost, use_ood, gate_enabled
        self.use_prior = bool(gate.prior_candidates)
        self.prior_weight = float(gate.prior_weight)
        self.use_safe = bool(gate.safe_candidate)
        self.fallback_safe = gate.fallback == "safe_action"
        self.has_cost = model.critic.has_cost
        self.candidate_count = (gate.policy_candidates + (self.reference.components if self.use_prior else 0)
                                + (1 if self.use_safe else 0))
        # Module attributes, not globals: TorchScript cannot read module-level constants.
        self.code_policy, self.code_candidate, self.code_fallback, self.code_fault = (
            CODE_POLICY, CODE_CANDIDATE, CODE_FALLBACK, CODE_FAULT)
        self.eval()

    def candidates(self, obs: torch.Tensor) -> torch.Tensor:
        """[K, B, A] in the unit box for finite raw observations: policy mean first, then offsets,
        pi_ref's means, the safe action."""
        x = self.obs_norm(self.features(obs))
        return self._candidates_from(self.actor(x), self.reference.candidates(x), self.safe_units(obs))

    def safe_units(self, obs: torch.Tensor) -> torch.Tensor:
        """[B, A] safe action in the unit box: constant, or braking against the observed velocity."""
        if self.braking:
            return torch.addcmul(self.safe_unit, obs.index_select(1, self.brake_indices), self.brake_unit_gain).clamp(-1.0, 1.0)
        return self.safe_unit.expand(obs.shape[0], self.safe_unit.shape[0])

    def _candidates_from(self, actor_out: tuple[torch.Tensor, torch.Tensor], prior_means: torch.Tensor,
                         safe: torch.Tensor) -> torch.Tensor:
        """Candidates from the actor's (mean, log-std), the prior's means and the safe action, computed once by the caller."""
        mean, log_std = actor_out
        parts = [torch.tanh(mean.unsqueeze(0) + log_std.exp().unsqueeze(0) * self.offsets)]
        if self.use_prior:
            parts.append(prior_means.transpose(0, 1))
        if self.use_safe:
            parts.append(safe.unsqueeze(0))
        return torch.cat(parts, dim=0)

    def goal_progress(self, obs: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """[K, B] weight * (candidate . unit goal vector) where the goal is within the radius, else 0."""
        goal = obs.index_select(1, self.goal_indices)
        dist = torch.linalg.vector_norm(goal, dim=1, keepdim=True)
        # At the goal itself (dist 0) every heading is as good: the clamp keeps the term finite.
        heading = goal / dist.clamp_min(1e-6)
        weight = (dist.squeeze(1) <= self.approach_radius).to(cands.dtype) * self.approach_weight
        return (cands * heading.unsqueeze(0)).sum(dim=-1) * weight.unsqueeze(0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        finite = torch.isfinite(obs).all(dim=1)
        clean = torch.where(finite.unsqueeze(1), obs, torch.zeros_like(obs))
        x = self.obs_norm(self.features(clean))
        safe = self.safe_units(clean)
        # One pass of pi_ref serves its candidates and its density (prior_weight); pi_beta's
        # (the OOD term) rides along as a second row of every prior op when gate.reference gives
        # them different networks: [P, ...] with P = 1 (pi_ref) or 2 (pi_ref, pi_beta).
        if self.fused:
            out = self.policy_pass(x)  # [2 or 3, B, width]: actor, pi_ref (, pi_beta)
            actor_out = self.actor.from_output(out[0].narrow(-1, 0, self.actor_width))
            # Both priors have pi_ref's shape and parameterisation, so one call maps both outputs.
            p_w, p_mean, p_log_std = self.reference.params_from_output(out[1:].narrow(-1, 0, self.prior_width))
        else:
            actor_out = self.actor(x)
            r_w, r_mean, r_log_std = self.reference.params(x)
            if self.support_pass:
                b_w, b_mean, b_log_std = self.prior.params(x)
                p_w, p_mean, p_log_std = (torch.stack([r_w, b_w]), torch.stack([r_mean, b_mean]),
                                          torch.stack([r_log_std, b_log_std]))
            else:
                p_w, p_mean, p_log_std = r_w.unsqueeze(0), r_mean.unsqueeze(0), r_log_std.unsqueeze(0)
        cands = self._candidates_from(actor_out, p_mean[0], safe)
        k = cands.shape[0]
        # The (s, a) rows, assembled once for the critics and the detector (fp32 outputs in either precision).
        pairs = pair_inputs(x, cands).to(self.value_dtype)
        q_task, cost_logits = self.critic.from_pairs(pairs, k, b)
        q_r = q_task.min(dim=0).values  # [K, B]: pessimistic about return
        score = q_r
        if self.prior_weight > 0.0 or self.ood_prior_scale > 0.0:
            density = self.reference.log_density(p_w.unsqueeze(1), p_mean.unsqueeze(1), p_log_std.unsqueeze(1), cands)
            log_prior, log_beta = density[0], density[-1]  # [K, B] each; the same row when pi_ref is pi_beta
        else:
            log_prior = torch.zeros_like(q_r)
            log_beta = log_prior
        if self.prior_weight > 0.0:
            # The actor's KL-regularised objective, per candidate: Q_R + beta log pi_ref (one fused op).
            score = torch.add(q_r, log_prior, alpha=self.prior_weight)
        if self.approaching:
            score = score + self.goal_progress(clean, cands)
        if cost_logits is not None:
            # Max of the logits, then the sigmoid: the same as the max of Q_C (monotone), on K*B values not E*K*B.
            q_c = self.critic.cost_value(cost_logits.max(dim=0).values)  # pessimistic about risk
        else:
            q_c = torch.zeros_like(q_r)
        ood = self.detector.score_of_pairs(pairs).view(k, b)
        if self.ood_prior_scale > 0.0:
            ood = with_prior_term(ood, log_beta, self.ood_prior_scale)  # model.ood_score, density reused

        if self.gate_enabled:
            if self.use_cost and self.use_ood:
                admissible = (q_c <= self.cost_threshold) & (ood <= self.ood_threshold)
            elif self.use_cost:
                admissible = q_c <= self.cost_threshold
            elif self.use_ood:
                admissible = ood <= self.ood_threshold
            else:
                admissible = torch.ones_like(q_r, dtype=torch.bool)
            any_ok = admissible.any(dim=0)
            best = torch.where(admissible, score, float("-inf")).argmax(dim=0)
            if self.fallback_safe and self.use_safe:
                # The safe action is executed, and it is the last candidate: report its values.
                idx = torch.where(any_ok, best, k - 1)
            else:
                if self.use_cost:
                    # Best Q_R among the candidates within the margin of the safest one.
                    near_safest = q_c <= q_c.min(dim=0, keepdim=True).values + self.fallback_margin
                    fallback = torch.where(near_safest, score, float("-inf")).argmax(dim=0)
                else:
                    fallback = ood.argmin(dim=0)
                idx = torch.where(any_ok, best, fallback)
            # Codes 0 (policy mean) / 1 (other candidate) / 2 (fallback), as floats for the record.
            code = torch.where(any_ok, (idx != 0).to(obs.dtype), float(self.code_fallback))
        else:
            any_ok = torch.ones(b, dtype=torch.bool, device=obs.device)
            idx = torch.zeros(b, dtype=torch.long, device=obs.device)
            code = torch.full((b,), float(self.code_policy), dtype=obs.dtype, device=obs.device)

        chosen = torch.gather(cands, 0, idx.view(1, b, 1).expand(1, b, cands.shape[2])).squeeze(0)
        action = self.act_mid + chosen * self.act_half
        if self.gate_enabled and self.fallback_safe and not self.use_safe:
            # With the safe candidate, the fallback index already chose it (to within rounding).
            action = torch.where(any_ok.unsqueeze(1), action, self.act_mid + safe * self.act_half)
        action = torch.clamp(action, self.act_low, self.act_high)

        # Record: code, then Q_R, Q_C, OOD of the chosen candidate, then Q_C, OOD of the proposal.
        values = torch.stack([q_r, q_c, ood])  # [3, K, B]
        picked = values.gather(1, idx.view(1, 1, b).expand(3, 1, b)).squeeze(1)  # [3, B]
        record = torch.cat([code.unsqueeze(0), picked, values[1:, 0]], dim=0).t()
        ok = (finite & torch.isfinite(action).all(dim=1)).unsqueeze(1)
        return torch.where(ok, action, self.safe_action), torch.where(ok, record, self.fault_record)


class PolicyController(nn.Module):
    """A bare policy with the controller's interface: the actor's mean (or a prior's mode).

    No gate: used for the plain-actor and BC rows of the ablation table and as the
    latency floor. Faults still give the safe action. Proposers: actor, plain, bc
    (pi_beta's mode), bc_successful (the reference prior's mode: filtered BC).
    """

    def __init__(self, model: SafeCriticModel, gate: GateConfig, proposer: str = "actor") -> None:
        super().__init__()
        self.features = copy.deepcopy(model.features)
        self.obs_norm = copy.deepcopy(model.obs_norm)
        self.use_prior = proposer in ("bc", "bc_successful")
        actor = model.plain_actor if proposer == "plain" else model.actor
        if actor is None:
            raise ValueError("the run has no plain actor")
        prior = model.reference_prior if proposer == "bc_successful" else model.prior
        if prior is None:
            raise ValueError("the run has no reference prior (trained with policy.prior.fit_successful=false)")
        self.actor: TanhGaussianActor = copy.deepcopy(actor)
        self.prior: MixturePrior = copy.deepcopy(prior)
        self.register_buffer("act_low", model.act_low.clone())
        self.register_buffer("act_high", model.act_high.clone())
        self.register_buffer("safe_action", safe_action_of(model, gate))
        self.candidate_count = 1
        self.record_width = len(RECORD_FIELDS)
        self.code_policy, self.code_fault = CODE_POLICY, CODE_FAULT
        self.eval()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        finite = torch.isfinite(obs).all(dim=1)
        x = self.obs_norm(self.features(torch.where(finite.unsqueeze(1), obs, torch.zeros_like(obs))))
        unit = self.prior.mode(x) if self.use_prior else self.actor.deterministic(x)
        action = self.act_low + (unit + 1.0) * 0.5 * (self.act_high - self.act_low)
        action = torch.maximum(torch.minimum(action, self.act_high), self.act_low)
        fault = ~finite | ~torch.isfinite(action).all(dim=1)
        action = torch.where(fault.unsqueeze(1), self.safe_action.expand_as(action), action)
        record = torch.full((obs.shape[0], self.record_width), float("nan"), dtype=obs.dtype)
        record[:, 0] = torch.where(fault, self.code_fault, self.code_policy).to(obs.dtype)
        return action, record
