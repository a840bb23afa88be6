"""The pydantic schema of a safecritic config.

Every section forbids unknown keys and checks ranges, so a typo or an impossible value
fails at load time with the field named, not deep inside training. Sections are added
as the parts of the stack that use them land.
"""

from __future__ import annotations

from pathlib import Path

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

    dataset_id: str = Field("safecritic/pointnav/mixed-v0", pattern=r"^[A-Za-z0-9_.\-/]+-v\d+$", description="Minari dataset id, '(namespace/)(env/)name-vN'.")
    episodes: int = Field(1000, ge=1, le=1_000_000, description="Episodes to collect.")
    behaviors: dict[str, float] = Field(
        default_factory=lambda: {"reckless": 0.4, "cautious": 0.4, "random": 0.2},
        min_length=1,
        description="Mixture of behaviour policies (name: weight) used to collect.",
    )
    seed: int = Field(0, ge=0, description="Seed of the collection: behaviour choice, noise and env resets.")
    workers: int = Field(2, ge=1, le=64, description="Processes used to collect.")
    calib_fraction: float = Field(0.2, gt=0.0, le=0.9, description="Fraction of episodes held out for calibration (never trained on).")
    split_seed: int = Field(0, ge=0, description="Seed of the train/calibration split by episode.")
    cost_labeler: str | None = Field(None, description="Cost labeler for datasets without a 'cost' info (see envs/labelers.py).")

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


class RunConfig(StrictModel):
    """Where a run's outputs go and how it uses the machine."""

    name: str = Field("pointnav", pattern=r"^[A-Za-z0-9_.\-]+$", description="Run name: outputs go to <runs_dir>/<name>/.")
    runs_dir: Path = Field(Path("runs"), description="Parent folder of run directories.")
    seed: int = Field(0, ge=0, description="Seed of training.")
    threads: int = Field(2, ge=1, le=256, description="torch intra-op threads (this project targets 2 cores).")


class Config(StrictModel):
    """A whole safecritic config (one YAML file)."""

    env: EnvConfig = Field(default_factory=EnvConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    run: RunConfig = Field(default_factory=RunConfig)

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
