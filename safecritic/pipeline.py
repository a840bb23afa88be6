"""The main job's stages as plain function calls, usable from Python and from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from safecritic.configs.errors import RunError
from safecritic.configs.loader import dump_config, load_config
from safecritic.configs.schema import Config
from safecritic.envs.collect import CollectSummary, collect_dataset
from safecritic.envs.dataset import OfflineData, load_offline_data


def collect(config: Config, overwrite: bool = False, progress: Callable[[int], None] | None = None) -> CollectSummary:
    """Stage 1: write the configured Minari dataset from the behaviour mixture."""
    return collect_dataset(config, overwrite=overwrite, progress=progress)


def default_run_dir(config: Config) -> Path:
    return config.run.runs_dir / config.run.name


def load_data(config: Config, config_path: Path | None = None) -> OfflineData:
    """Stage 2: the dataset as train/calibration transitions (a clear error if it is missing)."""
    flag = f" -c {config_path}" if config_path else ""
    hint = f"safecritic collect{flag}" + (
        "" if config_path else f" -o data.dataset_id={config.data.dataset_id}"
    )
    return load_offline_data(config.data, collect_hint=hint)


def check_run_dir(run_dir: Path, config: Config, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one with a different config."""
    from safecritic.controller.training import RunPaths

    paths = RunPaths(run_dir)
    if resume:
        if not paths.checkpoint.is_file():
            raise RunError(f"--resume: no checkpoint in {run_dir}; start it without --resume")
        saved = load_config(paths.config)
        if dump_config(saved) != dump_config(config):
            diff = _diff(saved.model_dump(mode="json"), config.model_dump(mode="json"))
            raise RunError(
                f"--resume: the config differs from the one {run_dir} was started with ({'; '.join(diff[:8])}); "
                f"resume with -c {paths.config}, or start a new run with another --run-dir"
            )
    elif paths.checkpoint.exists() or paths.metrics.exists():
        raise RunError(
            f"{run_dir} already holds a run; pass --resume to continue it, choose another --run-dir "
            "(or -o run.name=...), or delete the folder"
        )


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def train(config: Config, run_dir: Path | None = None, resume: bool = False, progress=None,
          config_path: Path | None = None) -> dict[str, Any]:
    """Stage 3: train prior, detector, critics and actor into run_dir (resumable)."""
    from safecritic.controller.training import NoProgress, Trainer

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    check_run_dir(run_dir, config, resume)
    data = load_data(config, config_path)
    trainer = Trainer(config, data, run_dir, progress=progress or NoProgress())
    return trainer.run(resume=resume)
