"""`safecritic`: the command line. Exit codes: 0 ok, 1 certification failed, 2 bad input."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Callable, Sequence

from safecritic import __version__
from safecritic.configs.errors import RunError, SafecriticError

PATH_ERRORS = (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _count(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the ValueError into a usage error, exit 2)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _seed(text: str) -> int:
    """argparse type: a whole number >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _folder(text: str) -> Path:
    """argparse type: a path that is, or can become, a folder (not a file, nor below one)."""
    path = Path(text)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be a folder: {blocker} is a file")
    return path


def _add_run_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=_folder, default=None, help="run directory (default: <run.runs_dir>/<run.name>)")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=None, metavar="CONFIG",
        help="YAML config (default: the packaged PointNav preset, configs/pointnav.yaml)",
    )
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value, dotted (repeatable), e.g. -o data.episodes=50",
    )


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where the evaluation episodes run: local (data.workers processes on this machine, the "
                        "default) or ray (Ray tasks; the same seeds give the same episodes); needs "
                        '`pip install "safecritic[ray]"`')
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="with --backend ray: the cluster to join (HOST:PORT, ray://HOST:PORT, or auto for the "
                        "one started on this machine); without it Ray starts here with data.workers CPUs")


def _runner(args: argparse.Namespace, config):
    """The evaluation backend the flags ask for, as a context manager (None: the local pool)."""
    from contextlib import nullcontext

    if args.backend == "local":
        if args.ray_address:
            raise RunError(f"--ray-address {args.ray_address} needs --backend ray")
        return nullcontext(None)
    from safecritic.deploy.ray_backend import RayRunner

    return RayRunner(args.ray_address, config.data.workers, config.env.imports)


def _load(args: argparse.Namespace):
    from safecritic.pipeline import load

    return load(args.config, args.override)


def _progress(total: int, desc: str, unit: str):
    """A tqdm bar on stderr (quiet when stderr is not a terminal and CI is set)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def cmd_collect(args: argparse.Namespace) -> int:
    from safecritic.deploy.report import success_cell
    from safecritic.pipeline import collect

    config = _load(args)
    with _progress(config.data.episodes, f"collect {config.data.dataset_id}", "ep") as bar:
        summary = collect(config, overwrite=args.overwrite, progress=bar.update)
    print(f"dataset  {summary.dataset_id}")
    print(f"path     {summary.path}")
    print(f"size     {summary.episodes} episodes, {summary.transitions} transitions, {summary.seconds:.1f} s")
    print(f"{'behaviour':<10} {'episodes':>8} {'success':>8} {'accident':>9} {'return':>8} {'length':>7}")
    for name, s in summary.per_behavior.items():
        print(
            f"{name:<10} {s['episodes']:>8d} {success_cell(s):>8} {s['accident_rate']:>9.1%} "
            f"{s['mean_return']:>8.2f} {s['mean_length']:>7.1f}"
        )
    return EXIT_OK


class BarProgress:
    """Adapts the trainer's progress protocol to one tqdm bar per phase."""

    KEYS = ("prior_nll", "reference_nll", "ood_loss", "q_task_loss", "cql_gap", "policy_risk_loss", "feasible",
            "constraint_binds", "multiplier_where_binding", "updates_per_s")

    def __init__(self) -> None:
        self.bar = None

    def start(self, phase: str, total: int, done: int) -> None:
        self.bar = _progress(total, f"train {phase}", "step")
        self.bar.update(done)

    def update(self, n: int, metrics: dict[str, float]) -> None:
        self.bar.set_postfix({k: f"{metrics[k]:.3g}" for k in self.KEYS if k in metrics}, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from safecritic.pipeline import train

    config = _load(args)
    summary = train(config, args.run_dir, args.resume, BarProgress(), config_path=args.config)
    cal = summary["calibration"]
    print(f"run       {summary['run_dir']}")
    print(
        f"data      {summary['dataset_id']}: {summary['train_transitions']} train / "
        f"{summary['calib_transitions']} calibration / {summary['test_transitions']} test transitions"
    )
    rate = summary["critic_updates_per_s"]
    print(f"speed     {rate:.1f} critic+actor updates/s" if rate else "speed     n/a")
    print(f"ood       tau = {cal.get('ood_tau', float('nan')):.4g} (alpha_fa = {cal.get('ood_alpha')}, n = {cal.get('ood_calib_n')}; "
          f"score = contrastive + {cal.get('ood_prior_scale', 0.0):.3g} x prior NLL)")
    if "accident_auroc" in cal:
        print(f"accident  Q_C ranks 'accident within {config.critics.accident.oversample_horizon} steps' on calibration "
              f"episodes with AUROC {cal['accident_auroc']:.3f} ({cal['accident_positives']} positive steps)")
    return EXIT_OK


def cmd_rollout(args: argparse.Namespace) -> int:
    import json

    from safecritic.configs.fileio import atomic_write_text
    from safecritic.controller.evaluation import evaluate_run
    from safecritic.controller.training import load_trained
    from safecritic.envs.registry import check_env_id

    load_trained(args.run_dir)  # refuse a missing or unfinished run, or an unknown env, before the progress bar
    envs = [check_env_id(env_id) for env_id in args.env] if args.env else None
    total = args.episodes * (len(envs) if envs else 1)
    with _progress(total, f"rollout {args.policy}", "ep") as bar:
        report = evaluate_run(args.run_dir, args.policy, envs, args.episodes, args.seed, bar.update)
    out = args.run_dir / "rollouts" / f"{args.policy}.json"
    atomic_write_text(out, json.dumps(report, indent=2))
    print(f"{'env':<32} {'policy':<7} {'episodes':>8} {'success':>8} {'accident':>9} {'return':>8} {'length':>7}")
    for env_id, s in report["results"].items():
        print(
            f"{env_id:<32} {args.policy:<7} {s['episodes']:>8d} {s['success_rate']:>8.1%} {s['accident_rate']:>9.1%} "
            f"{s['mean_return']:>8.2f} {s['mean_length']:>7.1f}"
        )
    print(f"saved {out}")
    return EXIT_OK


def cmd_ood_report(args: argparse.Namespace) -> int:
    from safecritic.ood_report import ood_report

    report = ood_report(args.run_dir, args.out)
    out = args.out or args.run_dir / "ood_report"
    methods = list(dict.fromkeys(r["method"] for r in report["rows"]))
    print(f"{'set':<58}" + "".join(f"{m[:14]:>16}" for m in methods) + "   (AUROC; alarm rate on the first row)")
    for set_name in dict.fromkeys(r["set"] for r in report["rows"]):
        cells = []
        for m in methods:
            r = next(r for r in report["rows"] if r["set"] == set_name and r["method"] == m)
            cells.append(f"{r['auroc']:>16.3f}" if "auroc" in r else f"{r['alarm_rate']:>16.3f}")
        print(f"{set_name[:58]:<58}" + "".join(cells))
    print(f"saved {out}/ood_report.md, ood_report.json, auroc_vs_sigma.png")
    return EXIT_OK


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def _print_engine_table(evaluation_envs: dict, title: str) -> None:
    print(title)
    print(f"  {'engine':<30} {'success':>8} {'accidents':>10} {'CP95 upper':>10} {'cost':>7} {'return':>8} {'length':>7} "
          f"{'p99 us':>7}")
    for env_id, ev in evaluation_envs.items():
        s = ev["summary"]
        success = _pct(s["success_rate"]) if s.get("reports_success", True) else "-"
        print(f"  {env_id:<30} {success:>8} {_pct(s['accident_rate']):>10} {_pct(s['accident_rate_upper']):>10} "
              f"{s['mean_cost']:>7.3g} {s['mean_return']:>8.2f} {s['mean_length']:>7.1f} {s['latency_us']['p99']:>7.0f}")


def _print_certification(report: dict) -> None:
    print(f"certification: {'PASSED' if report['passed'] else 'FAILED'}")
    for failure in report["failed_criteria"]:
        print(f"  failed: {failure}")
    print(f"  report: {report['report_dir']}/report.md")
    if report.get("released_to"):
        print(f"  released to {report['released_to']}")
    elif report["passed"]:
        print("  (not released)")
    else:
        print(f"  nothing released (the controller stays in {report['artifact_dir']}; "
              "`safecritic certify` re-judges it, e.g. with other criteria via -o)")


def cmd_export(args: argparse.Namespace) -> int:
    from safecritic.pipeline import export

    manifest = export(args.run_dir, args.out, args.variant, gate_overrides=args.override, onnx=args.onnx)
    out = args.out or args.run_dir / "artifact"
    from safecritic.deploy.export import PARITY_TOLERANCE
    from safecritic.deploy.onnx_export import RECORD_TOLERANCE
    from safecritic.deploy.runtime import artifact_digest

    print(f"exported {manifest['variant']['name']} to {out}/controller.pt{' + controller.onnx' if args.onnx else ''} "
          "(+ manifest.json, digest)")
    print(f"digest   {artifact_digest(manifest)} (SHA-256 over the manifest, which lists every file's SHA-256)")
    print(f"parity   max abs diff {manifest['parity_max_abs_diff']:.2e} (eager vs TorchScript, must be <= {PARITY_TOLERANCE:g})")
    if args.onnx:
        onnx = manifest["onnx"]
        print(f"onnx     opset {onnx['opset']}, sha256 {manifest['files']['controller.onnx']}; vs TorchScript: "
              f"record {onnx['parity_max_scaled_diff']:.2e} x max(1, |value|) on {onnx['parity_observations']['run']} "
              f"observations + {onnx['parity_observations']['fuzzed_records_judged']} fuzzed ones (must be <= {RECORD_TOLERANCE:g}), "
              f"actions and codes {onnx['parity_decisions_max_scaled_diff']:.2e} on those and all "
              f"{onnx['parity_observations']['fuzzed']} fuzzed ones (must be <= {PARITY_TOLERANCE:g})")
    print(f"gate     {manifest['candidates']} candidates, cost threshold {manifest['thresholds']['cost']:g}, "
          f"OOD threshold {manifest['thresholds']['ood']:.4g}")
    return EXIT_OK


def _artifact_config(args: argparse.Namespace):
    """-c/-o when given; else the config stored in the artifact's manifest (with -o applied)."""
    from safecritic.configs.loader import config_from_data
    from safecritic.pipeline import read_manifest

    if args.config is not None:
        return _load(args)
    return config_from_data(read_manifest(args.artifact_dir)["config"], args.override, "the artifact's config")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from safecritic.pipeline import evaluate

    config = _artifact_config(args)
    total = config.deploy.episodes * len(config.env.eval_ids)
    with _runner(args, config) as runner, _progress(total, "evaluate", "ep") as bar:
        evaluation = evaluate(args.artifact_dir, config, bar.update, runner=runner, trusted_keys=args.trusted_key)
    _print_engine_table(evaluation["envs"], f"evaluation of {args.artifact_dir} ({config.deploy.episodes} episodes per engine)")
    print(f"saved {args.artifact_dir}/evaluation.json")
    return EXIT_OK


def cmd_certify(args: argparse.Namespace) -> int:
    from safecritic.pipeline import certify

    config = _artifact_config(args)
    total = config.deploy.episodes * len(config.env.eval_ids)
    with _runner(args, config) as runner, _progress(total, "evaluate", "ep") as bar:
        report = certify(args.artifact_dir, config, args.report_dir, progress=bar.update, do_release=not args.no_release,
                         sign_key=args.sign_key, runner=runner, trusted_keys=args.trusted_key)
    if report["signed_by"]:
        print(f"signature verified: signed by {report['signed_by']}")
    _print_certification(report)
    return EXIT_OK if report["passed"] else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from safecritic.deploy.report import success_cell
    from safecritic.pipeline import run_all

    config = _load(args)
    start = time.perf_counter()
    names = ["collect", "train", "export", "evaluate", "certify"]

    def stage(message: str) -> None:
        name = message.split(":")[0]
        number = names.index(name) + 1 if name in names else "?"
        print(f"[{number}/{len(names)}] {message}", file=sys.stderr, flush=True)

    with _runner(args, config) as runner:
        report = run_all(config, args.run_dir, stage, lambda total, desc: _progress(total, desc, "ep"), BarProgress(),
                         config_path=args.config, sign_key=args.sign_key, runner=runner)
    minutes = (time.perf_counter() - start) / 60
    print()
    print(f"safecritic run {config.run.name}: {minutes:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in report['timings'].items() if v >= 1)})")
    print(f"run dir  {report['run_dir']}")
    _print_engine_table(report["engines"], "gated controller (the candidate for release; CP95 upper is what is judged):")
    print("all controllers, same episodes (ablations):")
    print(f"  {'controller':<16} {'engine':<18} {'success':>8} {'accidents':>10} {'cost':>7} {'return':>8}")
    for r in report["ablations"]:
        print(f"  {r['variant']:<16} {r['env_id'].split('/')[-1]:<18} {success_cell(r):>8} {_pct(r['accident_rate']):>10} "
              f"{r['mean_cost']:>7.3g} {r['mean_return']:>8.2f}")
    _print_certification(report)
    return EXIT_OK if report["passed"] else EXIT_FAILED


def cmd_sweep(args: argparse.Namespace) -> int:
    from safecritic.sweep import markdown, sweep

    table = sweep(args.config, args.override, args.seeds, args.grid, args.out, args.ray_address, args.trial_cpus)
    print(markdown(table["rows"]), end="")
    print(f"saved {args.out}/sweep.md, sweep.json ({len(table['trials'])} trials)")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from safecritic.pipeline import certify

    run_dir = args.run_dir
    if not (run_dir / "artifact" / "evaluation.json").is_file():
        raise RunError(f"{run_dir} has no evaluated artifact ({run_dir / 'artifact' / 'evaluation.json'} not found): "
                       "`safecritic report` re-renders a run that went through `safecritic run`; for a bare "
                       "artifact folder use `safecritic certify ARTIFACT_DIR`")
    ablations = {p.name: p for p in sorted((run_dir / "ablations").glob("*")) if (p / "evaluation.json").is_file()}
    report = certify(run_dir / "artifact", None, run_dir / "report", ablations, do_release=False)
    _print_certification(report)
    return EXIT_OK if report["passed"] else EXIT_FAILED


def cmd_keygen(args: argparse.Namespace) -> int:
    from safecritic.deploy.signing import generate_key

    public, key = generate_key(args.out)
    print(f"private key {args.out} (mode 0600: keep it secret; sign with --key / --sign-key {args.out})")
    print(f"public key  {public} (key id {key}: give it to robots, load(..., trusted_keys=[{str(public)!r}]))")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from safecritic.deploy.signing import sign_artifact

    key, digest = sign_artifact(args.artifact_dir, args.key)
    print(f"signed   {args.artifact_dir}/signature.json with key {key}")
    print(f"digest   {digest}")
    return EXIT_OK


def _add_sign_key_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sign-key", type=Path, default=None, metavar="PRIVATE_KEY",
                   help="sign the release with this Ed25519 key (`safecritic keygen`); robots that load it with "
                        "trusted_keys=[KEY.pub] refuse anything else")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safecritic",
        description=(
            "Train offline safety critics, gate a KL-constrained policy with them, export it to "
            "TorchScript and certify it in MuJoCo and PyBullet."
        ),
        epilog="Exit codes: 0 ok, 1 certification failed, 2 bad input. Docs: README.md.",
    )
    parser.add_argument("--version", action="version", version=f"safecritic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "collect",
        help="collect a Minari dataset from the config's behaviour mixture",
        description=(
            "Run the scripted behaviours named in data.behaviors (with their weights; empty: all of the task's, equally) for data.episodes "
            "episodes in env.id and write them as the local Minari dataset data.dataset_id, with per-step "
            "cost, accident and success infos. Datasets live under $MINARI_DATASETS_PATH "
            "(default ~/.minari/datasets). An existing dataset is never replaced without --overwrite."
        ),
    )
    _add_config_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset if it exists")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser(
        "train",
        help="train prior, OOD detector, task and accident critics and actor offline",
        description=(
            "Train on the config's dataset (collect it first): the behaviour prior and the contrastive OOD "
            "detector, then the CQL task critic, the CSC accident critic and the actor. Writes config.yaml, "
            "metrics.jsonl, train_summary.json and atomic checkpoints to the run directory "
            "(default runs/<run.name>). A killed run continues with --resume and ends as if never stopped."
        ),
    )
    _add_config_args(p)
    _add_run_dir_arg(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "rollout",
        help="run a trained run's actor (or its twin, or a BC prior) in the simulator, no gate",
        description=(
            "Roll out the mode of one of a trained run's policies (the constrained actor, its unconstrained "
            "twin, BC on all the data or on the successful episodes) for N episodes from fixed seeds, and report "
            "success, accident rate, return and length. A quick look at quality before export; the gated "
            "controller is evaluated by `safecritic evaluate`."
        ),
    )
    p.add_argument("run_dir", type=Path, help="a trained run directory (runs/<name>)")
    p.add_argument("--policy", choices=["actor", "unconstrained", "bc", "bc_successful"], default="actor",  # controller.evaluation.POLICIES (torch-free here)
                   help="actor: the constrained actor's mode; unconstrained: its twin fitted without the accident "
                        "constraint; bc: the behaviour prior's mode; bc_successful: the mode of the prior fitted to the "
                        "successful episodes (filtered BC)")
    p.add_argument("--env", action="append", default=[], metavar="ID", help="env id (repeatable; default: the run's env.id)")
    p.add_argument("-n", "--episodes", type=_count, default=200, help="episodes per env (default 200)")
    p.add_argument("--seed", type=_seed, default=1000, help="base seed of the evaluation episodes (default 1000)")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser(
        "ood-report",
        help="AUROC and false alarms of the gate's OOD score, its parts and two baselines on held-out OOD sets",
        description=(
            "Score the run's held-out test episodes (in-distribution) against uniform actions, data actions "
            "perturbed at sigma in {0.05, 0.1, 0.2, 0.5} of the action range, a behaviour left out of the "
            "data, noisy states and states from rollouts with shifted dynamics, with the gate's OOD score "
            "(contrastive detector + critics.ood.prior_weight x behaviour-prior NLL, at the run's own "
            "threshold), each of its two parts alone, Q-ensemble disagreement and Mahalanobis distance. "
            "Writes ood_report.json, "
            "ood_report.md and auroc_vs_sigma.png."
        ),
    )
    p.add_argument("run_dir", type=Path, help="a trained run directory")
    p.add_argument("--out", type=_folder, default=None, help="output folder (default RUN_DIR/ood_report)")
    p.set_defaults(func=cmd_ood_report)

    p = sub.add_parser(
        "export",
        help="export a trained run's gated controller to TorchScript + manifest",
        description=(
            "Script the gated controller (or one of its ablations), check it against the eager module on "
            "dataset observations (max abs diff <= 1e-5), and write controller.pt (carrying the facts the manifest "
            "states about it), manifest.json (spaces, thresholds, candidates, dataset id and hash, config, training "
            "metrics, torch version, every file's SHA-256) and digest (SHA-256 of the manifest)."
        ),
    )
    p.add_argument("run_dir", type=Path, help="a trained run directory")
    p.add_argument("--out", type=_folder, default=None, help="artifact folder (default RUN_DIR/artifact)")
    p.add_argument("--variant", default="gated",  # deploy.export.VARIANTS (torch-free here)
                   help="gated (default); the ablations: gate_off (the actor alone), accident_only, ood_only, "
                        "unconstrained, bc, bc_successful")
    p.add_argument("-o", "--override", action="append", default=[], metavar="gate.KEY=VALUE",
                   help="change a gate setting without retraining (repeatable), e.g. -o gate.cost_threshold=0.03 "
                   "or -o gate.policy_candidates=8; other sections need a new training run")
    p.add_argument("--onnx", action="store_true",
                   help="also write controller.onnx for onnxruntime (C++ stacks; docs/deploy_onnx.md), parity-checked "
                   "against controller.pt; needs pip install 'safecritic[onnx]'")
    p.set_defaults(func=cmd_export)

    for name, func, helptext in (
        ("evaluate", cmd_evaluate, "run an exported controller in every engine of the config"),
        ("certify", cmd_certify, "evaluate, judge the release criteria per engine, write the report, release on a pass"),
    ):
        p = sub.add_parser(
            name, help=helptext,
            description=(
                f"{helptext[0].upper() + helptext[1:]}. The exported file runs (through the torch+numpy runtime, "
                "digest-checked, the module against its manifest), not Python objects: deploy.episodes episodes per engine in env.eval_ids from fixed "
                "seeds (deploy.seed), spread over data.workers processes (or Ray tasks: --backend ray), with env.faults applied. Without -c, "
                "the config stored in the artifact's manifest is used (overrides still apply)."
                + (" Exit code 1 and nothing released when any criterion fails." if name == "certify" else "")
            ),
        )
        p.add_argument("artifact_dir", type=Path, help="artifact folder (controller.pt, manifest.json, digest)")
        _add_config_args(p)
        _add_backend_args(p)
        p.add_argument("--trusted-key", action="append", type=Path, default=None, metavar="PUBLIC_KEY",
                       help="run only an artifact signed by this Ed25519 public key (KEY.pub of `safecritic keygen`; "
                            "repeatable: any of them); an unsigned, foreign-signed or edited one exits 2")
        p.set_defaults(config=None)
        if name == "certify":
            p.add_argument("--report-dir", type=_folder, default=None, help="report folder (default ARTIFACT_DIR/report)")
            p.add_argument("--no-release", action="store_true", help="judge and report, but do not release")
            _add_sign_key_arg(p)
        p.set_defaults(func=func)

    p = sub.add_parser(
        "run",
        help="the main job: collect, train, export, evaluate, certify and release",
        description=(
            "Collect the dataset if it is missing, train (or resume an unfinished run), export the gated "
            "controller and its ablations, evaluate all of them in every engine, judge the release criteria "
            "and release the controller if it passes. Without -c it runs the packaged PointNav preset. "
            "Exit code 1 when certification fails (nothing is released)."
        ),
    )
    _add_config_args(p)
    _add_run_dir_arg(p)
    _add_sign_key_arg(p)
    _add_backend_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing releases",
                       description="Write a new Ed25519 private key to OUT (PEM, mode 0600) and its public key to "
                                   "OUT.pub. Sign with `safecritic sign` or `certify/run --sign-key OUT`; a robot "
                                   "trusts OUT.pub: runtime.load(ARTIFACT, trusted_keys=['OUT.pub']). Needs the "
                                   "cryptography package (pip install 'safecritic[sign]').")
    p.add_argument("out", type=Path, help="private key file to write (never replaced)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="sign an artifact folder or release (signature.json)",
                       description="Check an artifact as the runtime does (digest, files, module against manifest), "
                                   "then write signature.json: an Ed25519 signature of its digest, which covers the "
                                   "manifest and every file it lists. Replaces an earlier signature.")
    p.add_argument("artifact_dir", type=Path, help="artifact folder or release")
    p.add_argument("--key", type=Path, required=True, metavar="PRIVATE_KEY", help="the private key `keygen` wrote")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser(
        "sweep",
        help="train, export and evaluate a config over seeds and a grid of overrides with Ray Tune; one table",
        description=(
            "Each combination of --grid values and --seeds is a Ray Tune trial: the config (with -o, the "
            "combination and run.seed) trained, its gated controller exported and evaluated on the same "
            "deploy.seed episodes, in a run folder OUT/trials/<trial>. Writes OUT/sweep.md and OUT/sweep.json: "
            "success, accident rate and its CP95 upper bound, return and cost per trial and engine. Meant for small "
            "budgets (e.g. -c configs/smoke.yaml). Needs `pip install \"safecritic[ray]\"`; on a cluster, OUT "
            "and the datasets must be on a filesystem every node sees."
        ),
    )
    _add_config_args(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="run.seed values (default 0)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=[V1,V2]",
                   help="a config key and the values to try, as a YAML list (repeatable: every combination runs), "
                        "e.g. --grid 'train.steps=[200, 400]'")
    p.add_argument("--out", type=Path, required=True, help="folder for the trials' runs and the table")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="the Ray cluster to run on (HOST:PORT, ray://HOST:PORT, auto); without it Ray starts here")
    p.add_argument("--trial-cpus", type=int, default=1, metavar="N",
                   help="CPUs each trial holds, used as its run.threads and data.workers (default 1)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="rebuild a run's certification report from its saved evaluations",
                       description="Re-judge and re-render RUN_DIR/report from the evaluations already saved (no rollouts, no release).")
    p.add_argument("run_dir", type=Path, help="a run directory that went through `safecritic run`")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SafecriticError as exc:
        print(f"safecritic {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        # The runtime stands alone (torch + numpy), so its errors are plain ValueErrors.
        if type(exc).__module__ == "safecritic.deploy.runtime":
            print(f"safecritic {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    except PATH_ERRORS as exc:
        # A path the checks above did not foresee (a folder where a file must go, a read-only disk):
        # still the user's to fix, so a message, not a traceback.
        print(f"safecritic {args.command}: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        print(f"safecritic {args.command}: error: {exc.strerror}: {exc.filename}; free space or choose another "
              "folder (nothing was replaced: files are written atomically)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"safecritic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
