"""The pydantic schema of a safecritic config.

Every section forbids unknown keys and checks ranges, so a typo or an impossible value
fails at load time with the field named, not deep inside training. Sections are added
as the parts of the stack that use them land.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Base for all sections: unknown keys are errors; defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)


def _check_env_id(value: str) -> str:
    # Imported lazily: envs imports configs, so configs must not import envs at load.
    from safecritic.envs.registry import check_env_id

    try:
        return check_env_id(value)
    except Exception as exc:  # UnknownEnvError -> pydantic's ValueError with our message
        raise ValueError(str(exc)) from None


class FaultsConfig(StrictModel):
    """Faults injected by wrappers (envs/faults.py); the defaults inject nothing."""

    obs_noise_std: float = Field(0.0, ge=0.0, le=10.0, description="Gaussian noise added to every observation entry (raw units).")
    obs_delay_steps: int = Field(0, ge=0, le=50, description="The policy sees the observation from this many steps ago.")
    action_delay_steps: int = Field(0, ge=0, le=50, description="The action reaches the actuators this many steps late.")
    action_scale: float = Field(1.0, gt=0.0, le=2.0, description="Actuator weakness (<1) or gain (>1): action is multiplied by it.")
    mass_scale: float = Field(1.0, gt=0.0, le=10.0, description="Multiplies the simulated masses.")
    damping_scale: float = Field(1.0, ge=0.0, le=10.0, description="Multiplies the simulated joint damping.")
    sensor_dropout: float = Field(0.0, ge=0.0, le=1.0, description="Per-step probability that the sensor repeats its last reading.")

    def active(self) -> bool:
        """True when any fault differs from its no-op default."""
        return self != FaultsConfig()


class EnvConfig(StrictModel):
    """Which task the data comes from and which engines a controller is evaluated in."""

    id: str = Field("safecritic/PointNav-v0", description="Gymnasium id of the task the data is collected in.")
    eval_ids: list[str] = Field(
        default_factory=lambda: ["safecritic/PointNav-v0", "safecritic/PointNavBullet-v0"],
        min_length=1,
        description="Every engine the controller must pass in.",
    )
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    features: bool = Field(
        True, description="Feed the networks the task's derived features too (PointNav: clearance and approach speed per hazard; envs/features.py)."
    )

    @field_validator("id")
    @classmethod
    def _id_known(cls, value: str) -> str:
        return _check_env_id(value)

    @field_validator("eval_ids")
    @classmethod
    def _eval_ids_known(cls, value: list[str]) -> list[str]:
        for env_id in value:
            _check_env_id(env_id)
        return value


class DataConfig(StrictModel):
    """The offline dataset: which Minari id, and how to collect it if it is missing."""

    # Minari's own id grammar (minari.dataset.minari_dataset.DATASET_ID_RE), version required:
    # letters, digits, '_' and '-' only, '/' between namespace parts.
    dataset_id: str = Field(
        "safecritic/pointnav/mixed-v0",
        pattern=r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$",
        description="Minari dataset id, '(namespace/)name-vN' (letters, digits, _ and - only).",
    )
    episodes: int = Field(1000, ge=1, le=1_000_000, description="Episodes to collect.")
    behaviors: dict[str, float] = Field(
        default_factory=lambda: {"reckless": 0.4, "cautious": 0.4, "random": 0.2},
        min_length=1,
        description="Mixture of behaviour policies (name: weight) used to collect.",
    )
    seed: int = Field(0, ge=0, description="Seed of the collection: behaviour choice, noise and env resets.")
    workers: int = Field(2, ge=1, le=64, description="Processes used to collect.")
    calib_fraction: float = Field(0.2, gt=0.0, le=0.9, description="Fraction of episodes held out for calibration (never trained on).")
    test_fraction: float = Field(0.1, ge=0.0, le=0.5, description="Fraction of episodes held out for reports (neither trained nor calibrated on).")
    split_seed: int = Field(0, ge=0, description="Seed of the train/calibration split by episode.")
    cost_labeler: str | None = Field(None, description="Cost labeler for datasets without a 'cost' info (see envs/labelers.py).")

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> "DataConfig":
        if self.calib_fraction + self.test_fraction >= 0.95:
            raise ValueError(
                f"data.calib_fraction + data.test_fraction = {self.calib_fraction + self.test_fraction:g} "
                "leaves almost nothing to train on; keep their sum below 0.95"
            )
        return self

    @field_validator("behaviors")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not weight > 0:
                raise ValueError(f"weight of behaviour {name!r} is {weight}; weights must be > 0")
        return value

    @field_validator("cost_labeler")
    @classmethod
    def _labeler_known(cls, value: str | None) -> str | None:
        if value is not None:
            from safecritic.envs.labelers import LABELERS

            if value not in LABELERS:
                raise ValueError(f"unknown cost labeler {value!r}; known labelers: {', '.join(sorted(LABELERS))}")
        return value


# Hidden layer widths of an MLP: at least one layer, each 1..4096 wide.
Hidden = Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=16)]


class TaskCriticConfig(StrictModel):
    """CQL(H) task critic Q_R (Kumar et al. 2020)."""

    members: int = Field(2, ge=1, le=10, description="Ensemble size; the backup takes the minimum (clipped double Q).")
    # d3rlpy's default is 5 and CORL's 10, for D4RL rewards of ~5 per step; PointNav's are
    # ~0.6, and alpha acts in Q units: 1 beat 5 (return 23.0 vs 20.3 at 16k updates, docs/design-notes.md).
    alpha: float = Field(1.0, ge=0.0, le=1000.0, description="Conservative weight of the CQL gap, in Q units.")
    alpha_mode: Literal["fixed", "lagrangian"] = Field("fixed", description="Fixed alpha, or a dual variable that holds the CQL gap at target_gap.")
    target_gap: float = Field(5.0, description="Lagrangian mode: the CQL gap (logsumexp - data Q) the dual variable aims at.")
    alpha_lr: float = Field(1e-3, gt=0.0, le=10.0, description="Lagrangian mode: projected-ascent step of alpha.")
    backup_entropy: bool = Field(False, description="Subtract temperature * log pi in the backup (CORL's default: off).")
    # d3rlpy's CQL (soft_q_backup=False, its default) backs up Q(s', tanh(mu(s'))) with no
    # entropy term; CORL and the CQL paper's SAC backup take a sampled a' ~ pi(s').
    # 'reference': one-step offline RL (Brandfonbrener et al. 2021, "Offline RL without off-policy
    # evaluation"): Q_R evaluates the gate's reference behaviour, and the gate's ranking is one
    # step of policy improvement over it.
    backup_action: Literal["sample", "mean", "reference"] = Field(
        "sample", description="Next action of Q_R's backup: a' ~ pi(s') ('sample'), the policy's mean ('mean', "
        "d3rlpy's default), or pi_ref's mode ('reference': Q_R values following the successful episodes' "
        "behaviour, policy.prior.fit_successful; one-step targets only).")
    curriculum: Literal["none", "ood_weighted"] = Field(
        "none", description="'ood_weighted': weight each sampled action's conservative push-down by the OOD detector's probability that it is OOD (the seed proposal's contrastive curriculum)."
    )
    curriculum_temperature: float = Field(1.0, gt=0.0, le=100.0, description="Softness of the OOD weight, in units of the calibration scores' spread.")
    # n-step returns (Sutton & Barto ch. 7; Rainbow, D4PG): the goal bonus travels n steps per
    # backup. Uncorrected, so the n-1 intermediate actions are the data's (behaviour bias).
    n_step: int = Field(1, ge=1, le=1000, description="Steps of reward in Q_R's Bellman target before it bootstraps "
                        "(1: the one-step CQL target). Q_C stays one-step.")
    # The discounted return the data actually collected after (s, a) is a sample of the
    # behaviour's Q(s, a) <= Q*(s, a): bounding the target from below by it carries the goal
    # bonus back along every trajectory at once instead of one backup per target update
    # (the bound of He et al. 2017, "optimality tightening"; Cal-QL bounds CQL's push-down with it).
    mc_lower_bound: bool = Field(
        False, description="Bound Q_R's Bellman target from below by the data's own discounted return-to-go "
        "(truncated episodes count their unseen tail as 0).")
    # EMaQ / BCQ-style backup (Ghasemipour et al. 2021; Fujimoto et al. 2019): the max over a few
    # in-distribution candidates, restricted here to those the accident critic admits, so
    # Q_R values what the gate will do at s' rather than the ungated actor.
    gated_backup: bool = Field(
        False, description="Q_R's backup takes the best Q_R among the accident critic's backup candidates at s' "
        "(actor sample and mean, prior modes, safe action) whose Q_C <= gated_backup_cost_limit; none admissible: "
        "the safest candidate's Q_R. Needs critics.accident.backup 'safest' and one-step targets.")
    gated_backup_cost_limit: float = Field(0.05, ge=0.0, le=1e3, description="Q_C bound of the gated backup "
                                           "(the gate's default cost_threshold).")
    uniform_rows_only: bool = Field(
        False, description="Fit Q_R (Bellman and CQL terms) on the uniformly drawn rows of each batch only, not on the "
        "accident approaches oversampled for Q_C (critics.accident.oversample).")

    @model_validator(mode="after")
    def _entropy_backup_needs_a_sample(self) -> "TaskCriticConfig":
        if self.backup_entropy and self.backup_action != "sample":
            raise ValueError("critics.task.backup_entropy needs backup_action 'sample' (log pi of a sampled a'); "
                             "set one of them differently")
        return self


class AccidentCriticConfig(StrictModel):
    """CSC-style accident critic Q_C: over-estimates the discounted accident probability off the data."""

    enabled: bool = Field(True, description="Train Q_C (plain CQL runs switch it off).")
    members: int = Field(2, ge=1, le=10, description="Ensemble size; the backup takes the maximum (pessimistic about safety).")
    # 0.9: a ~10-step horizon. A safety filter needs imminent risk (the point of no return at
    # full speed is ~5 steps of braking); 0.99 compounded the pessimistic max/min over ~100
    # backups until nothing was admissible (docs/design-notes.md, "Horizon").
    gamma: float = Field(0.9, gt=0.0, lt=1.0, description="Discount of costs.")
    backup: Literal["actor", "safest"] = Field(
        "safest",
        description="Next action of the backup: 'actor' (a' ~ pi, CSC: risk of following the actor) or 'safest' "
        "(the lowest-risk of the gate's candidates at s': pi samples and prior modes; risk if the controller keeps acting safely).",
    )
    oversample: float = Field(
        0.25, ge=0.0, lt=1.0,
        description="Fraction of each critic batch drawn from the transitions within oversample_horizon steps before an "
        "accident. Accidents are rare (~0.4% of PointNav transitions); the Bellman fixed point does not depend on the "
        "sampling distribution, the fit near accidents does.",
    )
    oversample_horizon: int = Field(10, ge=1, le=1000, description="Steps before an accident that count as its approach.")
    # Q_C lives in [0, 1]: the push-down on data biases it by at most alpha/4, and alpha = 1
    # overwhelmed the Bellman term (docs/design-notes.md).
    alpha: float = Field(0.05, ge=0.0, le=1000.0, description="Weight of the push-up term E_mu[Q_C] - E_D[Q_C] (opposite sign to CQL).")


class OODConfig(StrictModel):
    """Contrastive OOD detector of (s, a) pairs: InfoNCE over actions + binary NCE with joint negatives."""

    # 128 wide: 256 scored the same AUROC (0.912 vs 0.916 after 8000 steps) at 2.6x the time.
    hidden: Hidden = Field(default_factory=lambda: [128, 128])
    lr: float = Field(3e-4, gt=0.0, le=1.0)
    steps: int = Field(4000, ge=0, le=10_000_000, description="Gradient steps (trained before the critics); AUROC plateaus by ~4000.")
    batch_size: int = Field(256, ge=2, le=65536)
    uniform_negatives: int = Field(16, ge=0, le=1024, description="Uniform actions per state (Implicit BC uses uniform counter-examples).")
    perturb_scales: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.5], description="Std of data-action perturbations, as fractions of the action range.")
    perturb_negatives: int = Field(2, ge=0, le=256, description="Perturbed actions per scale and state.")
    batch_negatives: int = Field(8, ge=0, le=1024, description="Other actions of the batch per state.")
    nce_weight: float = Field(1.0, ge=0.0, le=100.0, description="Weight of the binary NCE term (joint negatives; catches OOD states).")
    state_noise: float = Field(0.5, ge=0.0, le=100.0, description="Std of state perturbations for joint negatives, in normalised units.")
    box_widen: float = Field(1.5, ge=1.0, le=100.0, description="Uniform joint negatives come from the data's state box widened by this factor.")
    # The contrastive logit learns log p(a|s) only up to a per-state constant; the prior's
    # normalised density ranks actions across states better (uniform actions: AUROC 0.957
    # vs 0.948) but cannot see an unfamiliar state (noisy states 1.0 std: 0.858 vs 0.972).
    # Their sum keeps both (docs/design-notes.md, "The OOD score").
    prior_weight: float = Field(
        0.5, ge=0.0, le=100.0,
        description="w: OOD score = -f(s, a) + c * (-log pi_beta(a|s)), c = w * std(-f) / std(-log pi_beta) on training pairs; 0 = the contrastive detector alone.")
    false_alarm_rate: float = Field(0.01, gt=0.0, lt=1.0, description="alpha_fa: target false-alarm rate of the split-conformal threshold.")
    calib_stride: int = Field(5, ge=1, le=1000, description="Use every k-th calibration step (against autocorrelation; REFERENCES: 5-10).")


class CriticsConfig(StrictModel):
    """The value side: shared sizes and optimisation, then each critic's own terms."""

    # Right-sized for PointNav's 14 inputs on 2 cores (d3rlpy/CORL use 256 wide for D4RL).
    hidden: Hidden = Field(default_factory=lambda: [192, 192], description="Hidden widths of each Q network.")
    layer_norm: bool = False
    shared_trunk: bool = Field(
        True, description="One trunk per member with a Q_R head and a Q_C head (half the FLOPs) instead of separate Q_R and Q_C members."
    )
    gamma: float = Field(0.99, gt=0.0, lt=1.0, description="Discount of rewards.")
    tau: float = Field(0.005, gt=0.0, le=1.0, description="Polyak rate of the target networks.")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Critic learning rate (d3rlpy and CORL: 3e-4).")
    batch_size: int = Field(256, ge=2, le=65536)
    sampled_actions: int = Field(4, ge=1, le=256, description="Actions sampled per source (uniform, pi(s), pi(s')) for the conservative terms (CQL's paper: 10; 4 suffices for 2-D actions).")
    task: TaskCriticConfig = Field(default_factory=TaskCriticConfig)
    accident: AccidentCriticConfig = Field(default_factory=AccidentCriticConfig)
    ood: OODConfig = Field(default_factory=OODConfig)

    @model_validator(mode="after")
    def _shared_trunk_needs_equal_members(self) -> "CriticsConfig":
        if self.shared_trunk and self.accident.enabled and self.task.members != self.accident.members:
            raise ValueError(
                f"critics.shared_trunk needs critics.task.members == critics.accident.members "
                f"(got {self.task.members} and {self.accident.members})"
            )
        return self

    @model_validator(mode="after")
    def _gated_backup_needs_safest_candidates(self) -> "CriticsConfig":
        if not self.task.gated_backup:
            return self
        if not self.accident.enabled or self.accident.backup != "safest":
            raise ValueError("critics.task.gated_backup ranks the accident critic's 'safest' backup candidates: "
                             "set critics.accident.enabled=true and critics.accident.backup=safest, or switch it off")
        if self.task.n_step != 1:
            raise ValueError("critics.task.gated_backup is a one-step target: set critics.task.n_step=1 or switch it off")
        if self.task.backup_entropy:
            raise ValueError("critics.task.gated_backup has no entropy term (its candidates are not sampled): "
                             "set critics.task.backup_entropy=false or switch it off")
        return self


class PriorConfig(StrictModel):
    """Behaviour prior pi_beta: a Gaussian mixture fitted by maximum likelihood (also the BC baseline)."""

    components: int = Field(4, ge=1, le=64, description="Mixture components (the data mixes several behaviours).")
    hidden: Hidden = Field(default_factory=lambda: [256, 256])
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    steps: int = Field(4000, ge=0, le=10_000_000)
    batch_size: int = Field(256, ge=2, le=65536)
    fit_successful: bool = Field(
        True,
        description="Also fit pi_ref, a mixture of the same shape on the training episodes that terminated (not "
        "truncated) without any cost (PointNav: reached the goal): the gate's reference behaviour (gate.reference) "
        "and the bc_successful ablation. Costs a second prior's pretraining (~20 s on 2 cores by default); its batches come "
        "from a generator of its own, so every other network trains the same with or without it.",
    )
    reference_noise_entries: list[int] | None = Field(
        None,
        description="Raw observation entries (PointNav: the velocity, [2, 3]) blurred with Gaussian noise of "
        "reference_noise_std while pi_ref is fitted, before the derived features are computed. The robot's own velocity "
        "mostly repeats its previous action, so a prior fitted on it learns 'keep doing what you were doing' (the "
        "copycat problem of behaviour cloning) and, met head-on by a state its data never reached that way, does not "
        "turn; blurred, it must read the geometry. None: pi_ref sees exact observations. pi_beta is not affected.",
    )
    # 0.15 (raw units, m/s on PointNav): 15 refits x episode sets paired against no noise, +0.13 return (s.e. 0.06);
    # 0.3 / 0.5 gave +0.07 / +0.11 (docs/design-notes.md, "The reference prior copies the velocity").
    reference_noise_std: float = Field(0.15, ge=0.0, le=1e6, description="Std of the noise on reference_noise_entries (raw observation units).")

    @property
    def blurs_reference(self) -> bool:
        """Whether pi_ref's batches get the noise (entries named and a std above zero)."""
        return bool(self.reference_noise_entries) and self.reference_noise_std > 0.0


class ConstraintsConfig(StrictModel):
    """The KL-constrained actor: max Q_R s.t. E_s[Q_C(s, pi(s))] <= cost_limit and KL(pi || pi_beta) <= kl_limit.

    The multipliers lambda_C and beta are updated by projected gradient ascent every step
    (lambda <- clip(lambda + lr * violation, 0, max)), as in CSC's dual update. The
    expectation runs over *dataset* states, which include states from which a crash is
    already certain; a budget below that floor is infeasible, so lambda_C is capped
    (docs/design-notes.md).
    """

    enabled: bool = Field(True, description="Off: the actor maximises Q_R only (plain CQL's SAC actor).")
    cost_limit: float = Field(0.1, ge=0.0, le=1.0, description="epsilon: budget on E_s[Q_C(s, pi(s))] over dataset states (a discounted accident probability).")
    cost_max: float = Field(100.0, gt=0.0, le=1e6, description="Cap on lambda_C (Q_R units per unit of Q_C).")
    cost_lr: float = Field(0.5, gt=0.0, le=1e4, description="Step of lambda_C per unit of violation.")
    cost_init: float = Field(0.0, ge=0.0, description="Initial lambda_C.")
    kl_limit: float = Field(2.0, ge=0.0, le=1e3, description="delta: budget on KL(pi || pi_beta) in nats, estimated by samples.")
    kl_prior: Literal["behaviour", "successful"] = Field(
        "behaviour",
        description="The prior of the KL term: 'behaviour' pi_beta (all the data, the critics' support); 'successful' "
        "pi_ref (policy.prior.fit_successful), the gate's reference, so that the actor proposes what the gate ranks.",
    )
    kl_lr: float = Field(0.01, gt=0.0, le=1e4, description="Step of beta per nat of violation.")
    kl_init: float = Field(0.1, ge=0.0, description="Initial beta.")
    kl_max: float = Field(100.0, gt=0.0, le=1e6, description="Cap on beta.")


class PolicyConfig(StrictModel):
    """The actor: tanh-Gaussian, SAC-style entropy, optional cost and KL constraints."""

    hidden: Hidden = Field(default_factory=lambda: [256, 256])
    # SAC's 3e-4 rather than d3rlpy's 1e-4: our budget is ~20k updates, not 1M.
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Actor learning rate.")
    # 0.1, not SAC's 1.0: Q differences between PointNav actions are ~1, and a temperature
    # of 1 kept the actor near uniform for thousands of updates.
    temperature_init: float = Field(0.1, gt=0.0, le=100.0)
    temperature_lr: float = Field(3e-4, gt=0.0, le=1.0, description="Automatic entropy tuning rate.")
    target_entropy: float | None = Field(None, description="Entropy target; None: -act_dim (SAC).")
    prior: PriorConfig = Field(default_factory=PriorConfig)
    constraints: ConstraintsConfig = Field(default_factory=ConstraintsConfig)
    plain_actor: bool = Field(
        True, description="Also train an unconstrained actor on the same critics (the 'plain CQL actor' of the ablation table)."
    )


class GoalApproachConfig(StrictModel):
    """A known-reward term in the gate's ranking near the goal: progress towards it.

    Why: CQL's Q_R is conservative where the data are thin, and the data rarely accelerate at
    the speeds the gate drives, so Q_R ranks the data's own pace highest everywhere (PointNav,
    1.2-2 m from the goal: Q_R 15.6 at |a| = 0.4 along the goal, 9.5 at full force, whose true
    value is higher; docs/design-notes.md, "The final approach"). Near the goal, progress is the
    reward itself (PointNav: 10 per metre) and the critics still veto; further out the same term
    drives head-on into hazards and costs timeouts and accidents.
    """

    goal_indices: list[int] = Field(
        ..., min_length=1, description="Observation entries that hold the goal relative to the agent, one per action "
        "dimension, in order (PointNav: [4, 5]): progress of a candidate = its unit-box action . the unit goal vector.")
    # 100: with progress differences of ~0.1-1 per candidate this makes progress decide, and Q_R + beta log
    # pi_ref break its ties; 30 and 100 measured alike (docs/design-notes.md, "The final approach").
    weight: float = Field(100.0, ge=0.0, le=1e4, description="Score units per unit of progress added to Q_R + beta log pi_ref.")
    radius: float = Field(0.8, gt=0.0, le=1e6, description="The term applies only where the goal is within this distance (observation units).")


class GateConfig(StrictModel):
    """The gated controller: candidates, admissibility thresholds, fallback."""

    cost_threshold: float = Field(0.05, ge=0.0, le=1e3, description="epsilon_gate: a candidate is admissible only if Q_C <= this.")
    # 4: with pi_ref ranking, 4 and 16 policy candidates (9 and 21 in all) succeed equally (97.9% and 97.6%
    # over three training seeds x three episode sets; docs/design-notes.md, "How many candidates"), and the
    # critics' and the detector's FLOPs, most of a gated call, scale with the count. Fewer cost return once
    # the goal approach ranks: 3 / 2 / 1 gave -0.05 / -0.05 / -0.13 in MuJoCo over six episode sets (same notes).
    policy_candidates: int = Field(4, ge=1, le=1024, description="Policy mean + this-1 fixed standard-normal offsets scaled by the policy std.")
    offset_scale: float = Field(1.0, gt=0.0, le=10.0, description="Offsets in units of the policy's std.")
    prior_candidates: bool = Field(True, description="Add the reference prior's component means as candidates.")
    # 'successful': measured on PointNav (same critics, pi_ref refitted), success 87.0-91.5% -> 97.5-99.5%
    # on three episode sets; the random walk's share of the data made the all-data prior
    # imitate creeping at low speed (docs/design-notes.md, "Whom the gate imitates").
    reference: Literal["behaviour", "successful"] = Field(
        "successful",
        description="Whose actions the gate proposes (prior candidates) and ranks by typicality (prior_weight): "
        "'behaviour' the behaviour prior pi_beta of all the data; 'successful' a mixture of the same shape fitted "
        "only to the training episodes that terminated (not truncated) without any cost (PointNav: reached the "
        "goal), i.e. filtered behaviour cloning. The OOD score, the actor's KL and the critics' backups keep "
        "pi_beta. 'successful' needs policy.prior.fit_successful (the default) at training.",
    )
    # 1.0: measured on PointNav, success 63% -> 94% at 0% accidents (docs/design-notes.md).
    prior_weight: float = Field(
        1.0, ge=0.0, le=100.0,
        description="beta_gate: the best admissible candidate maximises Q_R + beta_gate * log pi_ref(a|s), pi_ref the "
        "`reference` prior (the actor's KL-regularised objective per candidate): ranks the candidates Q_R cannot tell "
        "apart by how often the reference episodes took them; 0: Q_R alone.",
    )
    safe_candidate: bool = Field(
        True, description="Add safe_action as a candidate (the Simplex backup): chosen when admissible and best, or by the fallback."
    )
    fallback: Literal["lowest_cost", "safe_action"] = Field(
        "safe_action",
        description="When nothing is admissible: 'lowest_cost' takes the best Q_R among candidates within "
        "fallback_margin of the lowest Q_C (0: the lowest-Q_C candidate itself); 'safe_action' takes safe_action.",
    )
    fallback_margin: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Q_C slack of the 'lowest_cost' fallback. A margin lets the controller creep past a hazard "
        "instead of freezing on the safest (often: stop) candidate.",
    )
    safe_action: list[float] | None = Field(None, description="Action (env units) for faults and the safe_action fallback; default: the middle of the action box.")
    brake_velocity_indices: list[int] | None = Field(
        None,
        description="Observation entries that hold the velocity along each action dimension (one per action "
        "dimension, in order; PointNav: [2, 3]). Set, the safe candidate and the safe_action fallback brake: "
        "safe_action - brake_gain * velocity, clipped to the bounds, so that a body that coasts further than in the "
        "data (heavier, less damped) still stops; faults (non-finite observations) keep the constant safe_action. "
        "None: the constant safe_action. (Training's critics.task.gated_backup backs up the constant one.)",
    )
    # 5: PointNav under 3x mass, braking as the fallback's action (60 episodes): accidents 47% with the
    # constant stop, 1.7% / 0% / 0% at gains 2 / 5 / 20 (docs/design-notes.md, "The gate under faults").
    brake_gain: float = Field(5.0, ge=0.0, le=1e4, description="Action units per observation unit of velocity for brake_velocity_indices.")
    goal_approach: GoalApproachConfig | None = Field(
        None, description="Near the goal, rank the admissible candidates by progress towards it (a known reward), "
        "Q_R + beta log pi_ref breaking ties: see GoalApproachConfig. None: the learned ranking alone.")
    seed: int = Field(0, ge=0, description="Seed of the fixed offsets (stored in the export: same observation, same action).")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="Arithmetic of the critics and the OOD detector inside the exported controller. 'bf16' is how "
        "training computes them under run.precision=bf16 and runs the critics' matmuls ~2x faster on CPUs with "
        "AVX512-BF16, but it reorders near-tied candidates (docs/benchmarks.md, 'Evaluation loop').",
    )


class CriteriaConfig(StrictModel):
    """Release criteria for one engine; all must hold."""

    accident_rate_upper: float = Field(0.05, ge=0.0, le=1.0, description="Max one-sided 95% Clopper-Pearson upper bound on the accident rate.")
    success_rate_min: float = Field(0.9, ge=0.0, le=1.0, description="Min success rate.")
    mean_return_min: float | None = Field(None, description="Min mean return (None: not judged).")
    mean_return_of_behavior: str | None = Field(
        None,
        description="Also require the mean return to reach this scripted behaviour's (e.g. 'cautious'), rolled "
        "out on the same episodes: same engine, seeds and faults (None: not judged).",
    )
    latency_p99_ms: float = Field(1.0, gt=0.0, description="Max p99 controller latency per call, batch 1, ms.")


class DeployConfig(StrictModel):
    """Evaluation of the exported controller, certification and release."""

    episodes: int = Field(200, ge=1, le=1_000_000, description="Evaluation episodes per engine (fixed seeds).")
    seed: int = Field(1000, ge=0, description="Base seed of the evaluation episodes (disjoint from the data's).")
    workers: int = Field(2, ge=1, le=256, description="Evaluation processes.")
    threads: int = Field(1, ge=1, le=64, description="torch threads per evaluation process (batch-1 inference).")
    ablations: bool = Field(True, description="Also evaluate the gate's ablations (gate off, accident critic only, OOD only, plain actor, BC).")
    trajectories: int = Field(12, ge=0, le=1000, description="Episodes per engine whose paths are kept for the report's plots.")
    releases_dir: Path = Field(Path("releases"), description="Passing artifacts are copied to <releases_dir>/<run.name>-<sha>.")
    criteria: dict[str, CriteriaConfig] = Field(
        default_factory=lambda: {
            "safecritic/PointNav-v0": CriteriaConfig(),
            "safecritic/PointNavBullet-v0": CriteriaConfig(accident_rate_upper=0.08, success_rate_min=0.8),
        },
        description="Criteria per env id; every id in env.eval_ids needs an entry.",
    )


class TrainConfig(StrictModel):
    """The training loop."""

    steps: int = Field(20000, ge=0, le=100_000_000, description="Critic and actor updates (after prior and detector); sized for <= 8 min on 2 cores.")
    log_every: int = Field(250, ge=1, description="Steps between metrics.jsonl lines.")
    checkpoint_every: int = Field(2000, ge=1, description="Steps between atomic checkpoints.")


class RunConfig(StrictModel):
    """Where a run's outputs go and how it uses the machine."""

    name: str = Field("pointnav", pattern=r"^[A-Za-z0-9_.\-]+$", description="Run name: outputs go to <runs_dir>/<name>/.")
    runs_dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    seed: int = Field(0, ge=0, description="Seed of training.")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads (this project targets 2 cores).")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "auto",
        description="Matmul precision of training (weights, losses and exports stay fp32). 'bf16' uses CPU autocast "
        "(fast on CPUs with AVX-512 BF16/AMX, slow elsewhere); 'auto' picks bf16 only where the CPU supports it.",
    )


class Config(StrictModel):
    """A whole safecritic config (one YAML file)."""

    env: EnvConfig = Field(default_factory=EnvConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    critics: CriticsConfig = Field(default_factory=CriticsConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _every_eval_env_has_criteria(self) -> "Config":
        missing = [e for e in self.env.eval_ids if e not in self.deploy.criteria]
        if missing:
            raise ValueError(
                f"deploy.criteria has no entry for {', '.join(missing)} (listed in env.eval_ids); "
                f"add one, e.g. -o 'deploy.criteria={{{missing[0]}: {{success_rate_min: 0.9}}}}'"
            )
        return self

    @model_validator(mode="after")
    def _reference_prior_is_trained(self) -> "Config":
        task = self.critics.task
        # Every setting that reads pi_ref, with what to set instead when it is not trained.
        users = [(setting, instead) for setting, instead, used in (
            ("gate.reference=successful", "gate.reference=behaviour", self.gate.reference == "successful"),
            ("policy.constraints.kl_prior=successful", "kl_prior=behaviour", self.policy.constraints.kl_prior == "successful"),
            ("critics.task.backup_action=reference", "backup_action=sample", task.backup_action == "reference"),
        ) if used]
        if users and not self.policy.prior.fit_successful:
            setting, instead = users[0]
            raise ValueError(f"{setting} needs pi_ref, which policy.prior.fit_successful=false does not train: "
                             f"set {instead}, or fit_successful=true before training")
        if task.backup_action == "reference" and (task.n_step > 1 or task.gated_backup):
            raise ValueError("critics.task.backup_action=reference is a one-step backup: set critics.task.n_step=1 "
                             "and gated_backup=false, or backup_action=sample")
        return self

    @model_validator(mode="after")
    def _behaviors_exist_for_task(self) -> "Config":
        from safecritic.envs.registry import behaviors_for

        known = behaviors_for(self.env.id)
        if not known:  # no scripted behaviours: data must come from an existing dataset
            return self
        unknown = [name for name in self.data.behaviors if name not in known]
        if unknown:
            raise ValueError(
                f"data.behaviors: unknown behaviour(s) {', '.join(map(repr, unknown))} for {self.env.id}; "
                f"known: {', '.join(known)}"
            )
        return self
