"""The pydantic schema of a safecritic config.

Every section forbids unknown keys and checks ranges, so a typo or an impossible value
fails at load time with the field named, not deep inside training. The schema imports
nothing above configs/: whether an env id, a behaviour or a labeler exists is checked by
envs (`safecritic.envs.validate.check_config`) before any work starts. Numbers taken
from a peer or a measurement say so; docs/design.md holds the evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """Base for all sections: unknown keys are errors; values keep their type (no bool -> int, no
    "5" -> 5); floats are finite (no field means NaN or inf: a NaN passes no range check silently
    and turns every loss into NaN minutes later)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True, strict=True,
                              allow_inf_nan=False)


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

    id: str = Field(min_length=1, description="Gymnasium id of the task, or `module:Env-v0` "
                    "(gymnasium's convention: the module is imported first and registers the id).")
    imports: list[str] = Field(default_factory=list, description="Modules to import before any env is made: the "
                               "user's modules that register their envs (and, optionally, a task: envs/task.py).")
    eval_ids: list[str] = Field(min_length=1, description="Every engine the controller must pass in.")
    faults: FaultsConfig = Field(default_factory=FaultsConfig)


class DataConfig(StrictModel):
    """The offline dataset: which Minari id, how to collect it if it is missing, how to split it."""

    # Minari's own id grammar (minari.dataset.minari_dataset.DATASET_ID_RE), version required.
    dataset_id: str = Field(pattern=r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$",
                            description="Minari dataset id, '(namespace/)name-vN' (letters, digits, _ and - only).")
    episodes: int = Field(1000, ge=1, le=1_000_000, description="Episodes to collect.")
    behaviors: dict[str, float] = Field(
        default_factory=dict, description="Mixture of the task's scripted behaviours (name: weight) used to collect; "
        "empty: every behaviour the task registers, in equal shares.")
    seed: int = Field(0, ge=0, description="Seed of the collection (behaviour choice, noise, resets) and of the split.")
    workers: int = Field(2, ge=1, le=64, description="Processes used to collect and to evaluate.")
    calib_fraction: float = Field(0.2, gt=0.0, le=0.9, description="Fraction of episodes held out for calibration (never trained on).")
    test_fraction: float = Field(0.1, ge=0.0, le=0.5, description="Fraction of episodes held out for reports (neither trained nor calibrated on).")
    cost_labeler: str | None = Field(None, description="Named cost labeler for datasets without a 'cost' info (a task's labelers, envs/task.py).")
    # 0.5: the better half of the cost-free episodes. Used only where the data has no success signal.
    successful_quantile: float = Field(
        0.5, ge=0.0, lt=1.0, description="Where the data records no `success` info, a 'successful' episode is a "
        "cost-free one whose return is at or above this quantile of the cost-free episodes' returns.")
    successful_max_cost: float = Field(
        0.0, ge=0.0, le=1e6, description="The most summed cost a 'successful' episode may have: 0 (cost-free) where "
        "costs are accidents; a task judged against an episode cost budget sets its budget.")

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> "DataConfig":
        if self.calib_fraction + self.test_fraction >= 0.95:
            raise ValueError(f"data.calib_fraction + data.test_fraction = {self.calib_fraction + self.test_fraction:g} "
                             "leaves almost nothing to train on; keep their sum below 0.95")
        return self

    @field_validator("behaviors")
    @classmethod
    def _weights_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not weight > 0:
                raise ValueError(f"weight of behaviour {name!r} is {weight}; weights must be > 0")
        return value


# Hidden layer widths of an MLP: at least one layer, each 1..4096 wide.
Hidden = Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=16)]


class AccidentCriticConfig(StrictModel):
    """CSC-style accident critic Q_C: over-estimates the discounted accident probability off the data."""

    # 0.9: a ~10-step horizon; 0.99 compounded the pessimistic max over ~100 backups until
    # nothing was admissible (docs/design.md, "The accident critic").
    gamma: float = Field(0.9, gt=0.0, lt=1.0, description="Discount of costs.")
    # Q_C lives in [0, 1]: the push-down on data biases it by at most alpha/4; alpha = 1 overwhelmed the Bellman term.
    alpha: float = Field(0.05, ge=0.0, le=1000.0, description="Weight of the push-up term E_mu[Q_C] - E_D[Q_C] (opposite sign to CQL).")
    # Accidents are rare (well under 1% of transitions on the shipped data); the Bellman fixed point does not depend on the
    # sampling distribution, the fit near accidents does.
    oversample: float = Field(0.25, ge=0.0, lt=1.0, description="Fraction of each critic batch drawn from the "
                                      "transitions within oversample_horizon steps before a cost.")
    oversample_horizon: int = Field(10, ge=1, le=1000, description="Steps before a cost that count as its approach.")


class OODConfig(StrictModel):
    """Contrastive OOD detector of (s, a) pairs: InfoNCE over actions + binary NCE with joint negatives."""

    # 128 wide: 256 scored the same AUROC (0.912 vs 0.916 after 8000 steps) at 2.6x the time.
    hidden: Hidden = Field(default_factory=lambda: [128, 128])
    steps: int = Field(4000, ge=0, le=10_000_000, description="Gradient steps (trained before the critics); AUROC plateaus by ~4000.")
    prior_weight: float = Field(
        0.5, ge=0.0, le=100.0, description="w: OOD score = -f(s, a) + c * (-log pi_beta(a|s)), c = w * std(-f) / "
        "std(-log pi_beta) on training pairs; 0 = the contrastive detector alone (docs/design.md, 'The OOD score').")
    false_alarm_rate: float = Field(0.01, gt=0.0, lt=1.0, description="alpha_fa: target false-alarm rate of the split-conformal threshold.")
    calib_stride: int = Field(5, ge=1, le=1000, description="Use every k-th calibration step (against autocorrelation; REFERENCES: 5-10).")


class CriticsConfig(StrictModel):
    """The value side: one ensemble of trunks, each with a Q_R head (CQL) and Q_C heads (CSC)."""

    # Right-sized for a few dozen inputs on 2 cores (d3rlpy/CORL use 256 wide for D4RL); docs/benchmarks.md.
    hidden: Hidden = Field(default_factory=lambda: [192, 192], description="Hidden widths of each Q network.")
    members: int = Field(2, ge=1, le=10, description="Ensemble size: Q_R takes the minimum (clipped double Q), Q_C the maximum.")
    gamma: float = Field(0.99, gt=0.0, lt=1.0, description="Discount of rewards.")
    tau: float = Field(0.005, gt=0.0, le=1.0, description="Polyak rate of the target networks.")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Learning rate of the critics and the detector (d3rlpy and CORL: 3e-4).")
    batch_size: int = Field(256, ge=2, le=65536, description="Batch of every network's update.")
    sampled_actions: int = Field(4, ge=1, le=256, description="Actions sampled per source (uniform, pi(s), pi(s')) "
                                 "for the conservative terms (CQL's paper: 10; 4 suffices for 2-D actions).")
    # d3rlpy's default is 5 and CORL's 10, for D4RL rewards of ~5 per step; alpha acts in Q units, so
    # smaller rewards want a smaller alpha: 1 beat 5 on the shipped data (docs/design.md, "The task critic").
    alpha: float = Field(1.0, ge=0.0, le=1000.0, description="CQL's conservative weight on Q_R, in Q units.")
    accident: AccidentCriticConfig = Field(default_factory=AccidentCriticConfig)
    ood: OODConfig = Field(default_factory=OODConfig)


class PolicyConfig(StrictModel):
    """The actor and the behaviour priors: Gaussian mixtures of one shape (one batched pass in the gate)."""

    hidden: Hidden = Field(default_factory=lambda: [256, 256], description="Hidden widths of the actor and the priors.")
    components: int = Field(4, ge=1, le=64, description="Mixture components (the data mixes several behaviours; a "
                            "single Gaussian would average them into actions nobody took).")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="Actor learning rate.")
    prior_lr: float = Field(1e-3, gt=0.0, le=1.0, description="Learning rate of the priors' maximum-likelihood fit.")
    prior_steps: int = Field(4000, ge=0, le=10_000_000, description="Gradient steps of the priors (before the critics).")
    cost_limit: float = Field(0.05, ge=0.0, le=1e3, description="epsilon: the state-wise accident budget, "
                                      "Q_C(s, pi(s)) <= epsilon wherever some candidate action achieves it; Q_C is "
                                      "normalised (an accident probability where costs end the episode, else the "
                                      "discounted cost over its maximum 1 / (1 - gamma_C)).")
    temperature: float = Field(0.3, gt=0.0, le=1e3, description="beta: sharpness of the advantage weights, in "
                                       "units of the advantages' spread (AWR's inverse temperature); -> 0 is BC on the "
                                       "successful episodes (docs/design.md, 'The actor's temperature').")
    learner: Literal["csc", "bc", "bc_safe", "bcq", "bcq_lag", "bear", "bear_lag", "brac", "mopo", "combo", "armor",
                     "cpq", "coptidice"] = Field(
        "csc", description="The offline learner (controller/learners/): csc, the state-wise accident-constrained "
        "actor on CQL (the default); bc, behaviour cloning on all the data; bcq, bear, brac, the policy-constraint "
        "families; mopo, combo and armor, the model-based ones; bc_safe, bcq_lag, bear_lag, cpq and coptidice, OSRL's "
        "safe offline baselines. Every learner gets the same accident critics "
        "and sits behind the same gate.")
    learner_options: dict[str, float] = Field(
        default_factory=dict, description="The learner's own settings by name (each learner's Options, at the top "
        "of its module), e.g. {phi: 0.1} for bcq; a name the learner does not have is refused.")


class GateConfig(StrictModel):
    """The gated controller: candidates, admissibility, fallback."""

    cost_threshold: float = Field(0.05, ge=0.0, le=1e3, description="epsilon_gate: a candidate is admissible only if Q_C <= this "
                                  "(normalised, as policy.cost_limit).")
    # 1: the critics' FLOPs, most of a gated call, scale with the count, and the points between the safe action
    # and the proposal (gate.py SEGMENT_FRACTIONS) earn more per candidate than offsets (docs/design.md, "The gate").
    policy_candidates: int = Field(1, ge=1, le=1024, description="The policy's proposal + this-1 fixed standard-normal "
                                   "offsets scaled by its std; the actor's other components' means and 3 points between "
                                   "the safe action and the proposal come on top.")
    prior_weight: float = Field(1.0, ge=0.0, le=100.0, description="When the proposal is vetoed, the admissible "
                                        "candidate with the highest Q_R + this * log pi(a|s) runs (the actor's own density).")
    safe_action: list[float] | None = Field(
        None, description="Constant action (env units) for faults and for tasks without a safe action of their own "
        "(envs/task.py); default: the middle of the action box.")


class CriteriaConfig(StrictModel):
    """Release criteria for one engine; all must hold."""

    accident_rate_upper: float = Field(0.05, ge=0.0, le=1.0, description="Max one-sided 95% Clopper-Pearson upper bound on the accident rate.")
    success_rate_min: float | None = Field(None, ge=0.0, le=1.0, description="Min success rate (None: not "
                                                   "judged; needs an env that reports info['success']).")
    cost_budget: float | None = Field(None, gt=0.0, description="kappa: the mean episode cost / kappa (DSRL's "
                                              "normalised cost) must be <= 1 (None: not judged).")
    mean_return_min: float | None = Field(None, description="Min mean return (None: not judged).")
    return_reference: str | None = Field(
        None, description="Also require the mean return to reach a reference's on the same episodes: a scripted "
        "behaviour of the task (e.g. 'cautious'), or a controller variant evaluated beside it ('bc', "
        "'bc_successful'); None: not judged.")
    latency_p99_ms: float = Field(1.0, gt=0.0, description="Max p99 controller latency per call, batch 1, ms.")


class DeployConfig(StrictModel):
    """Evaluation of the exported controller, certification and release."""

    episodes: int = Field(200, ge=1, le=1_000_000, description="Evaluation episodes per engine (fixed seeds).")
    seed: int = Field(1000, ge=0, description="Base seed of the evaluation episodes (disjoint from the data's).")
    ablations: bool = Field(True, description="Also evaluate the ablations (actor alone, one veto each, the "
                            "unconstrained actor, BC) on the same episodes.")
    trajectories: int = Field(12, ge=0, le=1000, description="Episodes per engine whose paths are kept for the report's plots.")
    onnx: bool = Field(False, description="Also write artifact/controller.onnx (the same controller for "
                       "onnxruntime, parity-checked against controller.pt; docs/deploy_onnx.md). Needs the onnx extra: "
                       "pip install 'safecritic[onnx]'.")
    releases_dir: Path = Field(Path("releases"), description="Passing artifacts are copied to <releases_dir>/<run.name>-<sha>.")
    criteria: dict[str, CriteriaConfig] = Field(
        default_factory=dict, description="Criteria per env id; every id in env.eval_ids needs an entry.")

    @field_validator("releases_dir", mode="before")
    @classmethod
    def _path(cls, value):
        return Path(value) if isinstance(value, str) else value


class TrainConfig(StrictModel):
    """The training loop."""

    steps: int = Field(20000, ge=0, le=100_000_000, description="Critic and actor updates (after the priors and the detector).")
    log_every: int = Field(250, ge=1, description="Steps between metrics.jsonl lines.")
    checkpoint_every: int = Field(2000, ge=1, description="Steps between atomic checkpoints.")


class RunConfig(StrictModel):
    """Where a run's outputs go and how it uses the machine."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9_.\-]+$", description="Run name: outputs go to <runs_dir>/<name>/.")
    runs_dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    seed: int = Field(0, ge=0, description="Seed of training.")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads of training (this project targets 2 cores).")
    precision: str = Field("auto", pattern=r"^(fp32|bf16|auto)$", description="Matmul precision of training (weights, "
                           "losses and exports stay fp32): 'bf16' CPU autocast (fast on CPUs with AVX-512 BF16/AMX), "
                           "'auto' bf16 only where the CPU supports it.")

    @field_validator("runs_dir", mode="before")
    @classmethod
    def _path(cls, value):
        return Path(value) if isinstance(value, str) else value


class Config(StrictModel):
    """A whole safecritic config (one YAML file)."""

    env: EnvConfig  # required: they name the task and its data, which have no default
    data: DataConfig
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
                f"add one, e.g. -o 'deploy.criteria={{{missing[0]}: {{accident_rate_upper: 0.05}}}}'"
            )
        return self


def leaf_fields(model: type[BaseModel] = Config) -> list[str]:
    """Every settable leaf of the schema, dotted (docs and a test keep the count in check)."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += [f"{name}.{leaf}" for leaf in leaf_fields(annotation)]
        else:
            out.append(name)
    return out
