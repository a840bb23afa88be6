"""The main job's stages as plain function calls, usable from Python and from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from safecritic.configs.errors import RunError
from safecritic.configs.loader import dump_config, load_config, preset_path
from safecritic.configs.lock import run_lock
from safecritic.configs.schema import Config
from safecritic.envs.collect import CollectSummary, collect_dataset
from safecritic.envs.dataset import OfflineData, load_offline_data

if TYPE_CHECKING:
    from safecritic.deploy.evaluate import Runner


DEFAULT_PRESET = "pointnav"  # the main job's embedded default (README): `safecritic run` with no -c


def load(config_path: str | Path | None, overrides=()) -> Config:
    """The config at `config_path` (None: the packaged default preset) with overrides, validated."""
    return load_config(preset_path(DEFAULT_PRESET) if config_path is None else config_path, overrides)


def check(config: Config, collecting: bool = False) -> Config:
    """Import env.imports and check every name the config gives (env ids, behaviours, labeler,
    return references) before any stage does work; returns the config."""
    from safecritic.envs.validate import check_config

    check_config(config, collecting)
    return config


def collect(config: Config, overwrite: bool = False, progress: Callable[[int], None] | None = None) -> CollectSummary:
    """Stage 1: write the configured Minari dataset from the behaviour mixture."""
    check(config, collecting=True)
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


# Sections read only after training (export, evaluation, certification): a finished run
# can be exported and judged again with other values of these.
POST_TRAINING_SECTIONS = ("gate", "deploy")


def with_post_training(trained: Config, config: Config) -> Config:
    """The trained run's config with `config`'s post-training sections (gate, deploy)."""
    return trained.model_copy(update={k: getattr(config, k) for k in POST_TRAINING_SECTIONS})


def check_run_dir(run_dir: Path, config: Config, resume: bool, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to overwrite a run, or to resume one with a different config (sections in `ignore` excepted)."""
    from safecritic.controller.training import RunPaths

    paths = RunPaths(run_dir)
    if resume:
        if not paths.checkpoint.is_file():
            raise RunError(f"--resume: no checkpoint in {run_dir}; start it without --resume")
        saved = load_config(paths.config)
        if dump_config(saved.model_copy(update={k: getattr(config, k) for k in ignore})) != dump_config(config):
            diff = _diff(saved.model_dump(mode="json", exclude=set(ignore)), config.model_dump(mode="json", exclude=set(ignore)))
            raise RunError(
                f"--resume: the config differs from the one {run_dir} was started with ({'; '.join(diff[:8])}); "
                f"resume with -c {paths.config}, or start a new run with another --run-dir"
            )
    elif paths.checkpoint.exists():  # metrics without a checkpoint: nothing to lose by starting over
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

    check(config)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    with run_lock(run_dir):  # the check and the writes under one lock: no second writer slips in between
        check_run_dir(run_dir, config, resume)
        data = load_data(config, config_path)
        trainer = Trainer(config, data, run_dir, progress=progress or NoProgress())
        return trainer.run(resume=resume)


# ----- export, evaluate, certify, release ----------------------------------------------

def export(run_dir: Path, out_dir: Path | None = None, variant_name: str = "gated", loaded=None,
           gate_overrides: list[str] | None = None, onnx: bool = False) -> dict[str, Any]:
    """Stage 5: TorchScript + manifest (after a parity check) for one controller variant; with
    `onnx` also controller.onnx (parity-checked against the TorchScript module).

    `loaded` (from deploy.export.load_for_export) saves re-reading the run for each variant.
    """
    from safecritic.deploy.export import VARIANTS, export_run

    if variant_name not in VARIANTS:
        raise RunError(f"unknown variant {variant_name!r}; known: {', '.join(VARIANTS)}")
    return export_run(Path(run_dir), out_dir, VARIANTS[variant_name], loaded, gate_overrides, onnx)


def _eval_settings(config: Config) -> dict[str, Any]:
    d = config.deploy
    return {"eval_ids": config.env.eval_ids, "episodes": d.episodes, "seed": d.seed,
            "faults": config.env.faults.model_dump()}


def verified_manifest(artifact_dir: Path, trusted_keys: list[Path] | None = None) -> tuple[dict[str, Any], str | None]:
    """(manifest, signer) of an artifact after every check the runtime makes (structure, digest,
    files, the module loaded and cross-checked against it; with `trusted_keys`, a signature by
    one of them), so a bad artifact stops here, before any worker starts."""
    from safecritic.deploy.certify import check_artifact
    from safecritic.deploy.runtime import ArtifactError

    try:
        manifest, _, signer = check_artifact(artifact_dir, trusted_keys)
    except ArtifactError as exc:
        raise RunError(str(exc)) from None
    return manifest, signer


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    """The manifest of a verified artifact (verified_manifest, no signature asked for)."""
    return verified_manifest(artifact_dir)[0]


def _check_sign_key(sign_key: Path | None) -> None:
    """A wrong signing key path must not cost a training run or an evaluation: read it first."""
    if sign_key is not None:
        from safecritic.deploy.signing import signer_id

        signer_id(sign_key)


def evaluate(artifact_dir: Path, config: Config | None = None, progress: Callable[[int], None] | None = None,
             reuse: bool = False, runner: Runner | None = None, trusted_keys: list[Path] | None = None) -> dict[str, Any]:
    """Stage 6: run the exported file in every env of the config; saves evaluation.json. With
    `trusted_keys`, only an artifact signed by one of them runs."""
    artifact_dir = Path(artifact_dir)
    manifest, _ = verified_manifest(artifact_dir, trusted_keys)
    return evaluate_many([artifact_dir], config, progress, reuse, runner, {artifact_dir: manifest})[artifact_dir]


def evaluate_many(artifact_dirs: list[Path], config: Config | None = None,
                  progress: Callable[[int], None] | None = None, reuse: bool = False,
                  runner: Runner | None = None, manifests: dict[Path, dict[str, Any]] | None = None
                  ) -> dict[Path, dict[str, Any]]:
    """Evaluate several artifacts on one backend (each saves its evaluation.json): `runner`
    (deploy/ray_backend.py's RayRunner), by default a pool of data.workers processes.

    With `reuse`, an artifact whose saved evaluation matches its hash and the config's
    evaluation settings is not run again.
    """
    import json

    from safecritic.configs.fileio import atomic_write_text
    from safecritic.deploy.evaluate import episodes_as_dicts, evaluate_artifacts, summarize_env
    from safecritic.deploy.runtime import artifact_digest

    known = manifests or {}  # verified already by the caller
    manifests = {Path(a): known.get(Path(a)) or read_manifest(Path(a)) for a in artifact_dirs}
    config = check(config or Config.model_validate(next(iter(manifests.values()))["config"]))
    out: dict[Path, dict[str, Any]] = {}
    todo = []
    for folder, manifest in manifests.items():
        path = folder / "evaluation.json"
        if reuse and path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("artifact_digest") == artifact_digest(manifest) and saved.get("settings") == _eval_settings(config):
                out[folder] = saved
                continue
        todo.append(folder)
    if todo:
        results = evaluate_artifacts(todo, config, progress, runner)
        for folder in todo:
            manifest = manifests[folder]
            evaluation = {
                "artifact_digest": artifact_digest(manifest),
                "variant": manifest["variant"]["name"],
                "settings": _eval_settings(config),
                "envs": {env_id: {"summary": summarize_env(ev), "episodes": episodes_as_dicts(ev)}
                         for env_id, ev in results[str(folder)].items()},
            }
            atomic_write_text(folder / "evaluation.json", json.dumps(evaluation))
            out[folder] = evaluation
    return out


def certify(artifact_dir: Path, config: Config | None = None, report_dir: Path | None = None,
            ablation_dirs: dict[str, Path] | None = None, progress: Callable[[int], None] | None = None,
            do_release: bool = True, sign_key: Path | None = None, runner: Runner | None = None,
            trusted_keys: list[Path] | None = None) -> dict[str, Any]:
    """Stage 7: judge the criteria per engine, write the report, release on a pass (signed
    with `sign_key` when given); `runner` is the evaluation's backend (default: the local pool).
    With `trusted_keys`, only an artifact signed by one of them is certified (report: signed_by)."""
    from safecritic.deploy.certify import release
    from safecritic.deploy.report import build_report
    from safecritic.deploy.runtime import artifact_digest

    artifact_dir = Path(artifact_dir)
    _check_sign_key(sign_key if do_release else None)
    manifest, signed_by = verified_manifest(artifact_dir, trusted_keys)
    config = check(config or Config.model_validate(manifest["config"]))
    ablation_dirs = {name: Path(folder) for name, folder in (ablation_dirs or {}).items()}
    manifests = {artifact_dir: manifest, **{folder: read_manifest(folder) for folder in ablation_dirs.values()}}
    evaluations = evaluate_many(list(manifests), config, progress, reuse=True, runner=runner, manifests=manifests)
    evaluation = evaluations[artifact_dir]
    ablations = {name: {"manifest": manifests[folder], "evaluation": evaluations[folder]}
                 for name, folder in ablation_dirs.items()}
    report_dir = Path(report_dir) if report_dir else artifact_dir / "report"
    report = build_report(config, manifest, evaluation, ablations, report_dir, signed_by)
    report["report_dir"] = str(report_dir)
    report["artifact_dir"] = str(artifact_dir)
    report["released_to"] = None
    if report["passed"] and do_release:
        report["released_to"] = str(release(artifact_dir, report_dir, config.deploy.releases_dir, config.run.name,
                                            artifact_digest(manifest), sign_key))
    return report


def run_all(config: Config, run_dir: Path | None = None, stage: Callable[[str], None] | None = None,
            bar: Callable[[int, str], Any] | None = None, train_progress=None,
            config_path: Path | None = None, sign_key: Path | None = None,
            runner: Runner | None = None) -> dict[str, Any]:
    """The main job: collect (if missing), train (or resume), export, evaluate, certify, release.

    `stage(message)` announces each stage; `bar(total, desc)` returns a context manager
    with `.update(n)` for the long loops; `train_progress` follows the trainer's protocol;
    `runner` is the evaluation's backend (default: the local pool).
    """
    check(config)  # a typo in a criterion must not cost a training run
    _check_sign_key(sign_key)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    with run_lock(run_dir):  # every stage writes into run_dir
        return _run_stages(config, run_dir, stage, bar, train_progress, config_path, sign_key, runner)


def _run_stages(config: Config, run_dir: Path, stage: Callable[[str], None] | None,
                bar: Callable[[int, str], Any] | None, train_progress, config_path: Path | None,
                sign_key: Path | None, runner: Runner | None) -> dict[str, Any]:
    import time

    from safecritic.controller.training import RunPaths, load_checkpoint
    from safecritic.deploy.export import ablations_for
    from safecritic.envs.minari_io import dataset_exists

    stage = stage or (lambda message: None)
    timings: dict[str, float] = {}
    paths = RunPaths(run_dir)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    if dataset_exists(config.data.dataset_id):
        stage(f"collect: dataset {config.data.dataset_id} exists, skipped")
    else:
        stage(f"collect: {config.data.episodes} episodes into {config.data.dataset_id}")
        timed("collect", lambda: _with_bar(bar, config.data.episodes, "collect", lambda cb: collect(config, progress=cb)))

    done = paths.checkpoint.is_file() and load_checkpoint(paths.checkpoint)["phase"] == "done"
    resume = paths.checkpoint.is_file()
    if done:
        check_run_dir(run_dir, config, resume=True, ignore=POST_TRAINING_SECTIONS)
        stage(f"train: {run_dir} is already trained, skipped")
    else:
        stage(f"train: {'resuming ' if resume else ''}{run_dir}")
        timed("train", lambda: train(config, run_dir, resume=resume, progress=train_progress, config_path=config_path))

    from safecritic.deploy.export import load_for_export

    stage(f"export: TorchScript{' + ONNX' if config.deploy.onnx else ''} + manifest (parity-checked)")
    artifact = run_dir / "artifact"
    loaded = load_for_export(run_dir)
    # The gate is built at export: this config's gate settings apply, not the training run's.
    loaded = (with_post_training(loaded[0], config), *loaded[1:])
    timed("export", lambda: export(run_dir, artifact, loaded=loaded, onnx=config.deploy.onnx))
    ablation_dirs: dict[str, Path] = {}
    if config.deploy.ablations:
        for variant in ablations_for(config):
            folder = run_dir / "ablations" / variant.name
            timed(f"export {variant.name}", lambda v=variant, f=folder: export(run_dir, f, v.name, loaded))
            ablation_dirs[variant.name] = folder

    variants = 1 + len(ablation_dirs)
    total = variants * len(config.env.eval_ids) * config.deploy.episodes
    stage(f"evaluate: {variants} controller(s) x {len(config.env.eval_ids)} engine(s) x {config.deploy.episodes} episodes")

    timed("evaluate", lambda: _with_bar(bar, total, "evaluate",
                                        lambda cb: evaluate_many([artifact, *ablation_dirs.values()], config, cb,
                                                                 runner=runner)))
    stage("certify: criteria per engine, report, release")
    report = timed("certify", lambda: certify(artifact, config, run_dir / "report", ablation_dirs, do_release=True,
                                                  sign_key=sign_key, runner=runner))
    report["timings"] = timings
    report["run_dir"] = str(run_dir)
    return report


def _with_bar(bar, total: int, desc: str, fn: Callable[[Callable[[int], None] | None], Any]) -> Any:
    if bar is None:
        return fn(None)
    with bar(total, desc) as b:
        return fn(b.update)
