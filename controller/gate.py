"""The gated controller: the policy proposes, the accident critics and the OOD detector veto.

One TorchScript-able module, deterministic (candidates fixed by the proposal, no runtime
randomness), taking raw observations [B, obs_dim] and returning

    action [B, act_dim]  clipped to the action bounds, never NaN
    record [B, 6]        decision code, Q_R, Q_C and OOD score of the executed action,
                         then Q_C and OOD score of the policy's own proposal

The Simplex architecture (REFERENCES.md, "Runtime assurance"): the policy's proposal (its
mode) runs whenever it is admissible; only when it is vetoed does another candidate run,
and only when none is admissible the safe action. A candidate is admissible when its
OOD score is within the conformal threshold and a known continuation keeps its accident
risk within epsilon: Q_C under the policy, or Q_C of recovery by the safest candidates,
whichever is lower (critics/csc.py).

Decision codes: 0 the policy's proposal, 1 another candidate, 2 fallback (nothing
admissible: the task's safe action, or, for a task without one, the proposal, which the
constraint fitted to minimise the risk where nothing is within the budget), 3 fault (non-finite observation or output: the constant
safe action). The gate knows nothing of the task: the task's features and its safe
action arrive as modules (envs/task.py) it calls without knowing what they mean.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from safecritic.configs.schema import GateConfig
from safecritic.controller.model import ConstantAction, SafeCriticModel, constant_safe_action
from safecritic.controller.policies import MixturePolicy, fused_policy_pass, log_density, mode_index, pick
from safecritic.critics.ood import with_prior_term
from safecritic.critics.q_ensemble import pair_inputs

CODE_POLICY, CODE_CANDIDATE, CODE_FALLBACK, CODE_FAULT = 0, 1, 2, 3
# Beyond this many data standard deviations (a normalised feature) an observation is a fault: no
# sensor reads there, and the critics' float32 sums would overflow, to NaN in torch and to other
# values in onnxruntime (bench/onnx_parity.py found entries of 1e37 do), so no decision there could
# be trusted or reproduced across runtimes. Far below any overflow, far above any data (~10).
JUDGED_LIMIT = 1e6
DECISIONS = {CODE_POLICY: "policy", CODE_CANDIDATE: "other candidate", CODE_FALLBACK: "fallback", CODE_FAULT: "fault"}
# The record's columns; the export writes this layout into the manifest for the runtime.
RECORD_FIELDS = ["code", "q_task", "q_cost", "ood_score", "proposal_q_cost", "proposal_ood_score"]
OFFSET_SEED = 0  # the fixed offsets' generator: any fixed seed (the export stores the offsets themselves)
# Candidates on the segment from the safe action to the proposal (fractions of the way): where the
# proposal is vetoed, a step part-way toward it is often admissible and earns more than the safe action.
SEGMENT_FRACTIONS = (0.25, 0.5, 0.75)


def fixed_offsets(count: int, act_dim: int) -> torch.Tensor:
    """[count, act_dim] standard-normal offsets; row 0 is zero (the proposal itself)."""
    offsets = torch.randn(count, act_dim, generator=torch.Generator().manual_seed(OFFSET_SEED))
    offsets[0] = 0.0
    return offsets


class GatedController(nn.Module):
    """Proposal and candidates -> one batched pass of Q_R, Q_C, OOD -> the proposal if admissible,
    else the best admissible candidate, else the safe action."""

    # A compile-time constant: TorchScript compiles only the branch taken, so a learner's own
    # policy (controller/learners/), which has no fused form, needs no `params_from_output`.
    __constants__ = ["fused"]

    def __init__(self, model: SafeCriticModel, gate: GateConfig, use_cost: bool = True, use_ood: bool = True) -> None:
        super().__init__()
        self.features = copy.deepcopy(model.features)
        self.obs_norm = copy.deepcopy(model.obs_norm)
        constant = constant_safe_action(gate.safe_action, model.act_low, model.act_high)
        # The task's safe action (envs/task.py), else the constant: gate.safe_action may change at export.
        task_module = not isinstance(model.safe_action, ConstantAction)
        self.safe_module = copy.deepcopy(model.safe_action) if task_module else ConstantAction(constant)
        self.actor: MixturePolicy = copy.deepcopy(model.actor)
        self.prior: MixturePolicy = copy.deepcopy(model.prior)  # pi_beta, for the OOD score's prior term
        self.ood_prior_scale = float(model.ood_prior_scale)
        fused = fused_policy_pass(self.actor, self.prior)  # one batched pass for both (identical outputs to ~1e-7)
        self.fused = fused is not None
        self.policy_pass = fused if fused is not None else nn.Identity()
        self.critic = copy.deepcopy(model.critic)
        self.critic.net.use_inference_head()  # the same values, a faster kernel for the narrow head
        self.detector = copy.deepcopy(model.detector)
        self.register_buffer("act_low", model.act_low.clone())
        self.register_buffer("act_high", model.act_high.clone())
        # Precomputed so that a call spends no ops on constants (batch-1 latency is dominated by
        # the number of ops, ~1.5 µs each, not by FLOPs; docs/benchmarks.md).
        self.register_buffer("act_mid", (model.act_low + model.act_high) / 2)
        self.register_buffer("act_half", (model.act_high - model.act_low) / 2)
        self.register_buffer("safe_action", constant)  # faults: the constant
        self.register_buffer("offsets", fixed_offsets(gate.policy_candidates, int(model.act_low.numel())).unsqueeze(1))
        self.register_buffer("segment_fractions", torch.tensor(SEGMENT_FRACTIONS).view(-1, 1, 1))
        self.register_buffer("cost_threshold", torch.tensor(float(gate.cost_threshold)))
        self.judged_limit = JUDGED_LIMIT
        self.register_buffer("ood_threshold", model.ood_tau.clone())
        fault_record = torch.full((len(RECORD_FIELDS),), float("nan"))
        fault_record[0] = float(CODE_FAULT)
        self.register_buffer("fault_record", fault_record)
        self.use_cost, self.use_ood = use_cost, use_ood
        # With nothing admissible: the task's safe action where it supplies one; else the proposal,
        # which at an infeasible state the constraint fitted to minimise the risk. A constant is no safe action
        # on its own, nor the critics' least risky candidate (measured: docs/design.md, "The gate").
        self.fallback_to_proposal = not task_module
        self.prior_weight = float(gate.prior_weight)
        self.candidate_count = gate.policy_candidates + self.actor.components + len(SEGMENT_FRACTIONS) + 1
        # Module attributes, not globals: TorchScript cannot read module-level constants.
        self.code_policy, self.code_candidate, self.code_fallback = float(CODE_POLICY), float(CODE_CANDIDATE), float(CODE_FALLBACK)
        self.eval()

    def _policies(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                                   tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The actor's and pi_beta's mixture parameters at normalised states (one fused pass)."""
        if self.fused:
            out = self.policy_pass(x)  # [2, B, width]: actor, pi_beta
            return self.actor.params_from_output(out[0]), self.prior.params_from_output(out[1])
        return self.actor(x), self.prior(x)

    def scores(self, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """At finite raw observations: candidates [K, B, A] (unit box; the proposal first, the safe
        action last), their Q_R, Q_C, OOD score and ranking score Q_R + w log pi(a|s), each [K, B]."""
        return self.scores_at(self.obs_norm(self.features(clean)), clean)

    def scores_at(self, x: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor, torch.Tensor]:
        """scores() at the normalised states x of the raw observations `clean`."""
        b = clean.shape[0]
        (log_w, mean, log_std), (p_w, p_mean, p_log_std) = self._policies(x)
        best = mode_index(log_w, mean, log_std)
        proposal, spread = pick(mean, best), pick(log_std, best).exp()
        # Fixed offsets around the proposal (in units of its component's std), the actor's component means,
        # points between the safe action and the proposal, the safe action.
        safe = ((self.safe_module(clean) - self.act_mid) / self.act_half).clamp(-1.0, 1.0)
        segment = safe.unsqueeze(0) + self.segment_fractions * (proposal - safe).unsqueeze(0)
        cands = torch.cat([(proposal.unsqueeze(0) + spread.unsqueeze(0) * self.offsets).clamp(-1.0, 1.0),
                           mean.transpose(0, 1), segment, safe.unsqueeze(0)], dim=0)
        k = cands.shape[0]
        pairs = pair_inputs(x, cands)  # assembled once for the critics and the detector
        q_task, cost_logits = self.critic.from_pairs(pairs, k, b)
        q_r = q_task.min(dim=0).values  # [K, B]: pessimistic about return
        if cost_logits is not None:
            # Pessimistic over members (max of the logits = max of Q_C: monotone), then the lower of the
            # two continuations: following the policy, or recovering by the safest candidates.
            q_c = self.critic.cost_value(cost_logits.max(dim=0).values.min(dim=-1).values)
        else:
            q_c = torch.zeros_like(q_r)
        ood = self.detector.score_of_pairs(pairs).view(k, b)
        if self.ood_prior_scale > 0.0:
            ood = with_prior_term(ood, log_density(p_w, p_mean, p_log_std, cands), self.ood_prior_scale)
        # The ranking of the alternatives: Q_R + w log pi(a|s), the actor's KL-regularised objective per candidate.
        score = torch.add(q_r, log_density(log_w, mean, log_std, cands), alpha=self.prior_weight)
        return cands, q_r, q_c, ood, score

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        finite = torch.isfinite(obs).all(dim=1)
        clean = torch.where(finite.unsqueeze(1), obs, torch.zeros_like(obs))
        x = self.obs_norm(self.features(clean))
        finite = finite & (x.abs() <= self.judged_limit).all(dim=1)  # NaN compares False: faulted too
        cands, q_r, q_c, ood, score = self.scores_at(x, clean)
        k = cands.shape[0]
        admissible = torch.ones_like(q_r, dtype=torch.bool)
        if self.use_cost:
            admissible = admissible & (q_c <= self.cost_threshold)
        if self.use_ood:
            admissible = admissible & (ood <= self.ood_threshold)
        best_other = torch.where(admissible, score, float("-inf")).argmax(dim=0)
        any_ok = admissible.any(dim=0)
        fallback = torch.zeros_like(best_other) if self.fallback_to_proposal else torch.full_like(best_other, k - 1)
        idx = torch.where(admissible[0], torch.zeros_like(best_other), torch.where(any_ok, best_other, fallback))
        code = torch.where(admissible[0], self.code_policy,
                           torch.where(any_ok, self.code_candidate, self.code_fallback))
        chosen = torch.gather(cands, 0, idx.view(1, b, 1).expand(1, b, cands.shape[2])).squeeze(0)
        action = torch.clamp(self.act_mid + chosen * self.act_half, self.act_low, self.act_high)

        values = torch.stack([q_r, q_c, ood])  # [3, K, B]
        picked = values.gather(1, idx.view(1, 1, b).expand(3, 1, b)).squeeze(1)  # [3, B]
        record = torch.cat([code.to(obs.dtype).unsqueeze(0), picked, values[1:, 0]], dim=0).t()
        # A non-finite value means the critics could not judge this state: a fault, not a decision
        # taken on NaN comparisons.
        ok = (finite & torch.isfinite(action).all(dim=1) & torch.isfinite(record).all(dim=1)).unsqueeze(1)
        return torch.where(ok, action, self.safe_action), torch.where(ok, record, self.fault_record)


class PolicyController(nn.Module):
    """A bare policy with the controller's interface: its mode, no gate.

    The actor alone (the `gate_off` ablation, and the latency floor), its unconstrained twin,
    BC (pi_beta's mode) and BC on the successful episodes (pi_ref's mode). Faults still give
    the safe action."""

    def __init__(self, model: SafeCriticModel, gate: GateConfig, policy: str = "actor") -> None:
        super().__init__()
        policies = {"actor": model.actor, "unconstrained": model.unconstrained, "bc": model.prior,
                    "bc_successful": model.reference}
        if policy not in policies:
            raise ValueError(f"unknown policy {policy!r}; known: {', '.join(policies)}")
        self.features = copy.deepcopy(model.features)
        self.obs_norm = copy.deepcopy(model.obs_norm)
        self.policy: MixturePolicy = copy.deepcopy(policies[policy])
        self.register_buffer("act_low", model.act_low.clone())
        self.register_buffer("act_high", model.act_high.clone())
        self.register_buffer("safe_action", constant_safe_action(gate.safe_action, model.act_low, model.act_high))
        self.candidate_count = 1
        self.record_width = len(RECORD_FIELDS)
        self.code_policy, self.code_fault = CODE_POLICY, CODE_FAULT
        self.judged_limit = JUDGED_LIMIT
        self.eval()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        finite = torch.isfinite(obs).all(dim=1)
        x = self.obs_norm(self.features(torch.where(finite.unsqueeze(1), obs, torch.zeros_like(obs))))
        finite = finite & (x.abs() <= self.judged_limit).all(dim=1)  # as the gate: beyond it, a fault
        unit = self.policy.mode(x)
        action = self.act_low + (unit + 1.0) * 0.5 * (self.act_high - self.act_low)
        action = torch.maximum(torch.minimum(action, self.act_high), self.act_low)
        fault = ~finite | ~torch.isfinite(action).all(dim=1)
        action = torch.where(fault.unsqueeze(1), self.safe_action.expand_as(action), action)
        record = torch.full((obs.shape[0], self.record_width), float("nan"), dtype=obs.dtype)
        record[:, 0] = torch.where(fault, self.code_fault, self.code_policy).to(obs.dtype)
        return action, record
