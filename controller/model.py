"""Everything one run trains, in one nn.Module: saved, loaded and exported as a unit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from safecritic.configs.schema import Config
from safecritic.controller.policies import MixturePrior, TanhGaussianActor
from safecritic.critics.duals import DualVariable
from safecritic.critics.networks import Normalizer
from safecritic.critics.ood import OODDetector, with_prior_term
from safecritic.critics.q_ensemble import QEnsemble
from safecritic.envs.features import featurizer_for


@dataclass(frozen=True)
class ModelSpec:
    """What the architecture depends on besides the config (read from the data)."""

    obs_dim: int
    act_dim: int
    cost_q_max: float
    act_low: tuple[float, ...]
    act_high: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(d["obs_dim"], d["act_dim"], d["cost_q_max"], tuple(d["act_low"]), tuple(d["act_high"]))

    def check_observation_entries(self, setting: str, entries: list[int] | None, fix: str) -> None:
        """A setting that names raw observation entries must name existing ones: a ConfigError otherwise."""
        bad = [i for i in entries or [] if not 0 <= i < self.obs_dim]
        if bad:
            from safecritic.configs.errors import ConfigError

            raise ConfigError(f"{setting} {bad} lie outside the observation (entries 0..{self.obs_dim - 1}): {fix}")


def _safe_action(config: Config, spec: ModelSpec) -> torch.Tensor:
    """gate.safe_action mapped into [-1, 1]^A (default: the middle of the box, 0)."""
    low, high = torch.tensor(spec.act_low), torch.tensor(spec.act_high)
    if config.gate.safe_action is None or len(config.gate.safe_action) != spec.act_dim:
        return torch.zeros(spec.act_dim)  # a wrong length is reported by the gate's own check
    action = torch.maximum(torch.minimum(torch.tensor(config.gate.safe_action), high), low)
    return (2.0 * (action - low) / (high - low) - 1.0).float()


class SafeCriticModel(nn.Module):
    """Normaliser, behaviour prior, OOD detector, critics (+ targets), actor, temperature, duals.

    Networks see normalised observations and actions in [-1, 1]^A; `normalize_obs`,
    `to_unit_action` and `from_unit_action` convert at the boundary.
    """

    def __init__(self, config: Config, spec: ModelSpec) -> None:
        super().__init__()
        c, p = config.critics, config.policy
        self.spec = spec
        # Derived features (envs/features.py) are appended before normalisation; every
        # network sees the featurized observation, and the exports carry the featurizer.
        self.features = featurizer_for(config.env.id, config.env.features)
        o, a = self.features.out_dim(spec.obs_dim), spec.act_dim
        self.obs_norm = Normalizer(torch.zeros(o), torch.ones(o))
        self.register_buffer("act_low", torch.tensor(spec.act_low, dtype=torch.float32))
        self.register_buffer("act_high", torch.tensor(spec.act_high, dtype=torch.float32))
        self.prior = MixturePrior(o, a, p.prior.hidden, p.prior.components)
        self.detector = OODDetector(o, a, c.ood.hidden, torch.full((o,), -3.0), torch.full((o,), 3.0))
        # Calibrated OOD threshold and the spread of calibration scores (set after pretraining).
        self.register_buffer("ood_tau", torch.tensor(float("inf")))
        self.register_buffer("ood_spread", torch.tensor(1.0))
        # c in OOD score = -f(s, a) + c * (-log pi_beta(a|s)); set with the threshold (0: contrastive alone).
        self.register_buffer("ood_prior_scale", torch.tensor(0.0))
        cost_members = c.accident.members if c.accident.enabled else 0
        self.critic = QEnsemble(
            o, a, c.hidden, c.task.members, cost_members, c.shared_trunk, c.layer_norm, spec.cost_q_max
        )
        self.critic_target = QEnsemble(
            o, a, c.hidden, c.task.members, cost_members, c.shared_trunk, c.layer_norm, spec.cost_q_max
        )
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.actor = TanhGaussianActor(o, a, p.hidden)
        self.log_temperature = nn.Parameter(torch.tensor(float(p.temperature_init)).log())
        # The unconstrained actor on the same critics (ablation "plain CQL actor"); its own temperature.
        self.plain_actor = TanhGaussianActor(o, a, p.hidden) if p.plain_actor else None
        self.plain_log_temperature = nn.Parameter(torch.tensor(float(p.temperature_init)).log()) if p.plain_actor else None
        self.cql_alpha = DualVariable(c.task.alpha, c.task.alpha_lr)
        # The gate's safe action in the unit box, also a candidate of the 'safest' backup.
        safe = _safe_action(config, spec)
        self.register_buffer("safe_action_unit", safe if config.gate.safe_candidate else None)
        k = p.constraints
        self.cost_multiplier = DualVariable(k.cost_init, k.cost_lr, k.cost_max)  # lambda_C
        self.kl_multiplier = DualVariable(k.kl_init, k.kl_lr, k.kl_max)  # beta
        # pi_ref, the gate's reference behaviour (gate.reference): pi_beta's shape, fitted to the successful
        # episodes only. Built last, so that its initialisation draws leave every other network's unchanged.
        fit = p.prior.fit_successful
        self.reference_prior = MixturePrior(o, a, p.prior.hidden, p.prior.components) if fit else None
        self.kl_to_reference = p.constraints.kl_prior == "successful"

    @property
    def kl_prior(self) -> MixturePrior:
        """The prior of the actor's KL term (policy.constraints.kl_prior): pi_beta or pi_ref."""
        if self.kl_to_reference:
            assert self.reference_prior is not None  # the schema requires policy.prior.fit_successful
            return self.reference_prior
        return self.prior

    def ood_score(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The OOD score the gate thresholds (higher: further from the data); obs [..., B, D], act [..., B, A]."""
        score = self.detector.score(obs, act)
        scale = float(self.ood_prior_scale)
        return with_prior_term(score, self.prior.log_prob(obs, act), scale) if scale > 0.0 else score

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Runs trained before the prior term in the OOD score have no `ood_prior_scale`:
        their threshold was calibrated on the contrastive score alone, which scale 0 reproduces."""
        if "ood_prior_scale" not in state_dict:
            state_dict = dict(state_dict)
            state_dict["ood_prior_scale"] = torch.tensor(0.0)
        if self.reference_prior is not None and not any(k.startswith("reference_prior.") for k in state_dict):
            from safecritic.configs.errors import RunError

            raise RunError("this run was trained without the reference prior pi_ref (before policy.prior.fit_successful "
                           "existed): in the run's config.yaml set policy.prior.fit_successful: false and "
                           "gate.reference: behaviour, or retrain")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def featurize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations [B, obs_dim] -> [B, feature_dim] (observation + derived features)."""
        return self.features(obs)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations -> the networks' normalised input."""
        return self.obs_norm(self.features(obs))

    def to_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        """Env action -> [-1, 1]^A."""
        return (2.0 * (act - self.act_low) / (self.act_high - self.act_low) - 1.0).clamp(-1.0, 1.0)

    def from_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        """[-1, 1]^A -> env action."""
        return self.act_low + (act + 1.0) * 0.5 * (self.act_high - self.act_low)
