"""`safecritic sweep`: one config trained, exported and evaluated over seeds and a grid of
overrides, each combination a Ray Tune trial, and the results in one table.

A trial is the main job's train -> export -> evaluate on the config's own budget (a sweep
is meant for small ones: -c configs/smoke.yaml, or -o train.steps=...); it holds
`trial_cpus` CPUs of the cluster and uses them for its training threads and evaluation
workers. Every trial is evaluated on the same episodes (deploy.seed is not swept), so the
table compares the configurations, not their luck. Nothing in a trial is new code: it
calls pipeline.py's stages.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from safecritic.configs.errors import ConfigError, RunError
from safecritic.configs.schema import Config

COLUMNS = ("trial", "seed", "overrides", "engine", "episodes", "success", "accident rate", "CP95 upper", "return", "cost")


def parse_grid(specs: Sequence[str]) -> list[list[str]]:
    """`KEY=[V1, V2]` per axis -> every combination, as lists of `-o` overrides."""
    axes = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        try:
            values = yaml.safe_load(raw) if sep else None
        except yaml.YAMLError:
            values = None
        if not key.strip() or not isinstance(values, list) or not values:
            raise ConfigError(f"--grid {spec!r}: expected KEY=[V1, V2, ...] (a YAML list of the values to try), "
                              "e.g. --grid 'train.steps=[200, 400]'")
        axes.append([f"{key.strip()}={json.dumps(v)}" for v in values])
    return [list(combo) for combo in itertools.product(*axes)]


def trial_table(seeds: Sequence[int], grid: Sequence[str]) -> list[dict[str, Any]]:
    """Every (grid combination, seed), named t000, t001, ... in that order."""
    combos = parse_grid(grid)
    trials = [{"seed": int(seed), "overrides": combo} for combo in combos for seed in seeds]
    return [{"name": f"t{i:03d}", **t} for i, t in enumerate(trials)]


def trial_config(config_path: Path, overrides: Sequence[str], trial: dict[str, Any], cpus: int) -> Config:
    """The trial's config: the base, the sweep's -o, the grid combination, its seed, its CPUs."""
    from safecritic.pipeline import load

    return load(config_path, [*overrides, *trial["overrides"], f"run.seed={trial['seed']}",
                              f"run.threads={cpus}", f"data.workers={cpus}"])


def _trial(params: dict[str, Any]) -> None:
    """One Tune trial (in a Ray worker): train, export, evaluate; report a summary to Tune."""
    from ray import tune

    from safecritic.pipeline import evaluate, export, train

    trial = params["trials"][params["index"]]
    config = trial_config(Path(params["config_path"]), params["overrides"], trial, params["cpus"])
    run_dir = Path(params["out"]) / "trials" / trial["name"]
    train(config, run_dir)
    export(run_dir)
    evaluation = evaluate(run_dir / "artifact", config)
    tune.report({"worst_accident_rate_upper": max(e["summary"]["accident_rate_upper"]
                                                  for e in evaluation["envs"].values())})


def _rows(trial: dict[str, Any], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for env_id, e in evaluation["envs"].items():
        s = e["summary"]
        rows.append({"trial": trial["name"], "seed": trial["seed"], "overrides": trial["overrides"], "engine": env_id,
                     "episodes": s["episodes"], "success_rate": s["success_rate"] if s["reports_success"] else None,
                     "accident_rate": s["accident_rate"], "accident_rate_upper": s["accident_rate_upper"],
                     "mean_return": s["mean_return"], "mean_cost": s["mean_cost"]})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [r["trial"], str(r["seed"]), " ".join(f"`{o}`" for o in r["overrides"]) or "-", r["engine"],
                 str(r["episodes"]), pct(r["success_rate"]), pct(r["accident_rate"]), pct(r["accident_rate_upper"]),
                 f"{r['mean_return']:.2f}", f"{r['mean_cost']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep(config_path: Path | None, overrides: Sequence[str], seeds: Sequence[int], grid: Sequence[str],
          out_dir: Path, address: str | None = None, trial_cpus: int = 1) -> dict[str, Any]:
    """Run every trial on Ray (a cluster at `address`, or Ray started here) and write
    out_dir/sweep.json and sweep.md: one row per trial and engine."""
    from safecritic.configs.fileio import atomic_write_text
    from safecritic.configs.loader import preset_path
    from safecritic.deploy.ray_backend import RayRunner
    from safecritic.envs.minari_io import dataset_exists
    from safecritic.pipeline import DEFAULT_PRESET, check, collect

    config_path = (Path(config_path) if config_path else preset_path(DEFAULT_PRESET)).resolve()
    out_dir = Path(out_dir).resolve()  # Tune runs each trial in a folder of its own
    if (out_dir / "trials").exists():
        raise RunError(f"{out_dir} holds a sweep already; choose another --out or delete that folder")
    if trial_cpus < 1:
        raise ConfigError(f"--trial-cpus {trial_cpus}: a trial needs at least one CPU")
    trials = trial_table(seeds, grid)
    configs = [check(trial_config(config_path, overrides, t, trial_cpus)) for t in trials]  # bad input before any work
    for config in {c.data.dataset_id: c for c in configs}.values():
        if not dataset_exists(config.data.dataset_id):
            collect(config)
    env_vars = {k: os.environ[k] for k in ("MINARI_DATASETS_PATH",) if k in os.environ}
    imports = list(dict.fromkeys(m for c in configs for m in c.env.imports))
    with RayRunner(address, None, imports, env_vars) as ray_runner:
        ray_runner.connect()
        from ray import tune

        tuner = tune.Tuner(
            tune.with_resources(_trial, {"cpu": trial_cpus}),
            param_space={"index": tune.grid_search(list(range(len(trials)))), "trials": trials,
                         "config_path": str(config_path), "overrides": list(overrides), "out": str(out_dir),
                         "cpus": trial_cpus},
            run_config=tune.RunConfig(name="tune", storage_path=str(out_dir), verbose=1),
        )
        with contextlib.redirect_stdout(sys.stderr):  # Tune's progress; stdout keeps the table
            results = tuner.fit()
    failed = {trials[r.config["index"]]["name"]: str(r.error).strip().splitlines()[-1] for r in results if r.error}
    rows = []
    for t in trials:
        path = out_dir / "trials" / t["name"] / "artifact" / "evaluation.json"
        if t["name"] not in failed:
            rows += _rows(t, json.loads(path.read_text()))
    table = {"config": str(config_path), "overrides": list(overrides), "seeds": list(seeds), "grid": list(grid),
             "trials": trials, "rows": rows, "failed": failed}
    atomic_write_text(out_dir / "sweep.json", json.dumps(table, indent=2))
    atomic_write_text(out_dir / "sweep.md", markdown(rows))
    if failed:
        raise RunError(f"{len(failed)} of {len(trials)} trials failed ({'; '.join(f'{k}: {v}' for k, v in failed.items())}); "
                       f"the others are in {out_dir / 'sweep.md'}")
    return table
