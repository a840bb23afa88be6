"""Everything one run trains, in one nn.Module: saved, loaded and exported as a unit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from safecritic.configs.schema import Config
from safecritic.controller.policies import MixturePolicy
from safecritic.critics.networks import Normalizer
from safecritic.critics.ood import OODDetector, with_prior_term
from safecritic.critics.q_ensemble import QEnsemble
from safecritic.envs.registry import task_for
from safecritic.envs.task import Task


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


class Identity(nn.Module):
    """The observation as it is (a task without derived features)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


class ConstantAction(nn.Module):
    """The safe action of a task without one of its own: a constant, whatever the observation."""

    def __init__(self, action: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("action", action.clone().float())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action.expand(obs.shape[0], self.action.shape[0])


def constant_safe_action(values: list[float] | None, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """gate.safe_action clipped to the bounds (default: the middle of the action box), env units."""
    low, high = low.float(), high.float()
    if values is None:
        return (low + high) / 2
    action = torch.tensor(values, dtype=torch.float32)
    if action.shape != low.shape:
        from safecritic.configs.errors import ConfigError

        raise ConfigError(f"gate.safe_action has {action.numel()} entries; the action space has {low.numel()}: "
                          f"give {low.numel()} numbers, or null for the middle of the box")
    return torch.maximum(torch.minimum(action, high), low).float()


class SafeCriticModel(nn.Module):
    """Features, normaliser, priors, OOD detector, critics (+ targets), the actor and its unconstrained twin.

    Networks see normalised featurised observations and actions in [-1, 1]^A;
    `normalize_obs`, `to_unit_action` and `from_unit_action` convert at the boundary.
    """

    def __init__(self, config: Config, spec: ModelSpec, task: Task | None = None, learner: type | None = None) -> None:
        super().__init__()
        c, p = config.critics, config.policy
        self.spec = spec
        task = task or task_for(config.env.id)
        # The task's derived features are appended before normalisation; every network sees them,
        # and the exports carry the module (envs/task.py).
        self.features = task.features() if task.features is not None else Identity()
        with torch.no_grad():
            o = int(self.features(torch.zeros(1, spec.obs_dim)).shape[1])
        a = spec.act_dim
        self.obs_norm = Normalizer(torch.zeros(o), torch.ones(o))
        self.register_buffer("act_low", torch.tensor(spec.act_low, dtype=torch.float32))
        self.register_buffer("act_high", torch.tensor(spec.act_high, dtype=torch.float32))
        # The safe action: the task's own module (raw observations -> env action), else a constant.
        constant = constant_safe_action(config.gate.safe_action, self.act_low, self.act_high)
        self.register_buffer("safe_action_unit", self.to_unit_action(constant))
        self.safe_action = (task.safe_action(self.act_low, self.act_high) if task.safe_action is not None
                            else ConstantAction(constant))
        self.prior = MixturePolicy(o, a, p.hidden, p.components)  # pi_beta: all the data (BC)
        self.reference = MixturePolicy(o, a, p.hidden, p.components)  # pi_ref: the successful episodes
        self.detector = OODDetector(o, a, c.ood.hidden, torch.full((o,), -3.0), torch.full((o,), 3.0))
        # Calibrated OOD threshold, and c of the score's prior term (set after pretraining).
        self.register_buffer("ood_tau", torch.tensor(float("inf")))
        self.register_buffer("ood_prior_scale", torch.tensor(0.0))
        self.critic = QEnsemble(o, a, c.hidden, c.members, 2, spec.cost_q_max)
        # Q_C starts at the budget, not at 0.5: from 0.5 every state looks infeasible for the first
        # thousands of updates, the actor learns only to minimise a risk estimate still inflated by the
        # push-up, and it settled on standing still (docs/design.md, "The accident critic").
        self.critic.start_cost_heads_at(p.cost_limit)
        self.critic_target = QEnsemble(o, a, c.hidden, c.members, 2, spec.cost_q_max)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        if learner is None:  # controller/learners/: policy.learner's, which says what its policy is
            from safecritic.controller.learners import learner_class

            learner = learner_class(config.policy.learner)
        self.actor = learner.build_actor(self, o, a, config)
        self.unconstrained = MixturePolicy(o, a, p.hidden, p.components)  # the ablation: no accident constraint

    def ood_score(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The OOD score the gate thresholds (higher: further from the data); obs [B, D], act [..., B, A]."""
        score = self.detector.score(obs, act)
        scale = float(self.ood_prior_scale)
        return with_prior_term(score, self.prior.log_prob(obs, act), scale) if scale > 0.0 else score

    def safe_units(self, raw_obs: torch.Tensor) -> torch.Tensor:
        """The safe action at raw observations, in the unit box [B, A] (training's candidates)."""
        return self.to_unit_action(self.safe_action(raw_obs))

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations -> the networks' normalised input."""
        return self.obs_norm(self.features(obs))

    def to_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        """Env action -> [-1, 1]^A."""
        return (2.0 * (act - self.act_low) / (self.act_high - self.act_low) - 1.0).clamp(-1.0, 1.0)

    def from_unit_action(self, act: torch.Tensor) -> torch.Tensor:
        """[-1, 1]^A -> env action."""
        return self.act_low + (act + 1.0) * 0.5 * (self.act_high - self.act_low)
