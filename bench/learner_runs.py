"""The suite's learner rows: each learner (policy.learner) and d3rlpy's implementations, trained on
one preset's data with several seeds, rolled out on the certification's episodes.

Every output is resumable and reused: a learner's run folder is
`<work>/<task>/<learner>/seed<k>/` (trained, then its `gated` and `gate_off` artifacts exported
and evaluated, each step skipped when its result is on disk for the same settings); d3rlpy's
policies are `<work>/<task>/d3rlpy-<algo>/seed<k>/policy.pt` with their episodes beside them.
Each folder's `suite_timing.json` holds its training seconds, from which the suite states its cost.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import scripted_policy, write_json  # noqa: E402

from safecritic.configs import load_config  # noqa: E402
from safecritic.configs.schema import Config  # noqa: E402
from safecritic.controller.evaluation import rollout_policy  # noqa: E402

D3RLPY_ALGOS = ("cql", "bcq", "bear", "bc")


def _timed(folder: Path, name: str, fn: Callable[[], Any]) -> None:
    """Run fn once and add its seconds to the folder's suite_timing.json under `name`."""
    path = folder / "suite_timing.json"
    timing = json.loads(path.read_text()) if path.is_file() else {}
    start = time.perf_counter()
    fn()
    timing[name] = timing.get(name, 0.0) + time.perf_counter() - start
    write_json(path, timing)


def learner_config(run_dir: Path, learner: str, seed: int, steps: int | None, episodes: int | None) -> Config:
    """The run's configuration with this learner, seed, and (when given) training and evaluation budget."""
    overrides = [f"policy.learner={learner}", f"run.seed={seed}"]
    overrides += [f"train.steps={steps}"] if steps else []
    overrides += [f"deploy.episodes={episodes}"] if episodes else []
    return load_config(run_dir / "config.yaml", overrides)


def learner_evaluations(run_dir: Path, learner: str, seed: int, work: Path, steps: int | None = None,
                        episodes: int | None = None) -> dict[str, Any]:
    """{"gated": {env: episodes}, "gate_off": {...}, "train_seconds": s} of one learner and seed."""
    from safecritic.controller.training import RunPaths, load_checkpoint
    from safecritic.pipeline import evaluate_many, export, train

    config = learner_config(run_dir, learner, seed, steps, episodes)
    folder = work / config.run.name / learner / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = RunPaths(folder).checkpoint
    if not (checkpoint.is_file() and load_checkpoint(checkpoint)["phase"] == "done"):
        _timed(folder, "train", lambda: train(config, folder, resume=checkpoint.is_file()))
    variants = {name: folder / name for name in ("gated", "gate_off")}
    for name, out in variants.items():
        if not (out / "manifest.json").is_file():
            export(folder, out, name)
    evaluations = evaluate_many(list(variants.values()), config, reuse=True)
    timing = json.loads((folder / "suite_timing.json").read_text()) if (folder / "suite_timing.json").is_file() else {}
    return {name: {env: ev["episodes"] for env, ev in evaluations[out]["envs"].items()} for name, out in variants.items()} | {
        "train_seconds": timing.get("train")}


def d3rlpy_evaluations(run_dir: Path, algo: str, seed: int, work: Path, steps: int,
                       episodes: int | None = None) -> dict[str, Any]:
    """{"alone": {env: episodes}, "train_seconds": s} of d3rlpy's `algo` trained `steps` updates on the
    run's training split, its deterministic policy rolled out on the run's evaluation episodes."""
    from vs_d3rlpy import HP, D3rlpyWorker, ensure_venv, export_dataset

    from safecritic.envs.dataset import load_offline_data

    config = learner_config(run_dir, "csc", seed, None, episodes)
    folder = work / config.run.name / f"d3rlpy-{algo}" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    policy, result = folder / "policy.pt", folder / "episodes.json"
    if not policy.is_file():
        python = ensure_venv(work.parent / "d3rlpy-venv")
        data = folder / "train.npz"
        export_dataset(load_offline_data(config.data), data)
        worker = D3rlpyWorker(python, data, HP | {"algo": algo, "seed": seed, "warmup": steps // 4})

        def fit() -> None:
            worker.call(f"update {steps}")
            worker.call(f"save {policy}")

        _timed(folder, "train", fit)
        worker.close()
        data.unlink()
    d = config.deploy
    saved = json.loads(result.read_text()) if result.is_file() else None
    if saved is None or saved["settings"] != [d.episodes, d.seed]:
        controller = scripted_policy(policy)
        envs = {env: [{"ret": e.ret, "cost": e.cost, "accident": e.accident, "success": e.success}
                      for e in rollout_policy(controller, env, d.episodes, d.seed, config.env.faults)]
                for env in config.env.eval_ids}
        saved = {"settings": [d.episodes, d.seed], "envs": envs}
        write_json(result, saved)
    timing = json.loads((folder / "suite_timing.json").read_text())
    return {"alone": saved["envs"], "train_seconds": timing.get("train")}
