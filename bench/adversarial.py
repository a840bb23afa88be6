"""Adversarial input, concurrent writers and kill -9 at every phase: is each one handled?

    python bench/adversarial.py [--workdir runs/bench/adversarial_work] [--out runs/bench/adversarial.json]

Handled means, per class:
  config, data, cli   exit code 2, a message naming the problem (the field, the dataset file or the
                      argument), no traceback, and every file of a trained run, its artifact and the
                      dataset byte-identical afterwards (the CLI runs in this process: ~ms a case).
  concurrency         of two writers of one run folder or dataset id, exactly one writes and the other
                      exits 2 naming the holder; a lock left by a killed process blocks nothing.
  kill_resume         a real `safecritic` subprocess SIGKILLed at a named point (SAFECRITIC_CRASH_AT:
                      every phase boundary, mid checkpoint write) or at a random moment, then the next
                      command: training ends with weights bit-identical to an uninterrupted run's (and
                      the same metrics); collect and export leave nothing half-written under the real
                      names and work the next time.
When bench/adversarial_artifact.py exists (the artifact/manifest/runtime cases), its
`run(workdir, artifact_dir)` is called on this script's exported smoke artifact and its classes are
merged. Each class: {"tried", "handled", "failures": [{"case", "detail"}]}. Writes the JSON and
prints a table. Everything runs on the smoke preset in an isolated MINARI_DATASETS_PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
ENV_ID = "safecritic/PointNav-v0"  # the smoke preset's, for criteria keys
# Short schedule, one thread (bit-identical across processes); log lines that do not divide checkpoints.
TINY = ["train.steps=30", "train.checkpoint_every=12", "train.log_every=5", "critics.ood.steps=20",
        "policy.prior_steps=20", "run.threads=1"]
Result = dict[str, Any]


class Tally:
    """tried / handled / failures of one class."""

    def __init__(self) -> None:
        self.tried, self.handled, self.failures = 0, 0, []

    def add(self, case: str, ok: bool, detail: str = "") -> None:
        self.tried += 1
        self.handled += bool(ok)
        if not ok:
            self.failures.append({"case": case, "detail": detail[-600:]})

    def result(self) -> Result:
        return {"tried": self.tried, "handled": self.handled, "failures": self.failures}


# ----- running the CLI ---------------------------------------------------------------

def cli_inprocess(argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of `safecritic argv` in this process; an escaping exception is a traceback."""
    from safecritic.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # noqa: BLE001 - the point is to catch what escapes
        return -1, err.getvalue() + f"\nTraceback (escaped): {exc.__class__.__name__}: {exc}"
    return code, err.getvalue()


def cli(*args: str, crash: str | None = None, wait: bool = True):
    """`safecritic args` as a subprocess (kills and concurrency need real processes)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("SAFECRITIC_CRASH_AT", None)
    if crash:
        env["SAFECRITIC_CRASH_AT"] = crash
    command = [sys.executable, "-m", "safecritic.cli", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def train_args(run_dir: Path, *extra: str, config: Path = SMOKE) -> list[str]:
    return ["train", "-c", str(config), "--run-dir", str(run_dir), *[a for o in TINY for a in ("-o", o)], *extra]


def clear_refusal(code: int, err: str, needle: str) -> tuple[bool, str]:
    ok = code == 2 and "Traceback" not in err and "error:" in err and needle in err
    return ok, f"exit {code}; wanted 2 naming {needle!r}; stderr: {err.strip()}"


class Guard:
    """Hashes of every file under some folders: 'nothing overwritten' is checked after each case."""

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
                for folder in self.folders for p in sorted(folder.rglob("*")) if p.is_file()}

    def changed(self) -> list[str]:
        now = self.snapshot()
        return sorted(k for k in set(now) | set(self.before) if now.get(k) != self.before.get(k))


def weights_equal(a: Path, b: Path) -> tuple[bool, str]:
    import torch

    sa = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    sb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    if sb["phase"] != "done":
        return False, f"resumed run ended in phase {sb['phase']!r}"
    diff = [k for k in sa["model"] if not torch.equal(sa["model"][k], sb["model"][k])]
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "updates_per_s"}
                for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    if diff:
        return False, f"{len(diff)} tensors differ from the uninterrupted run's, e.g. {diff[:3]}"
    if metrics[0] != metrics[1]:
        return False, "metrics.jsonl differs from the uninterrupted run's"
    if not (b / "train_summary.json").is_file():
        return False, "no train_summary.json"
    return True, ""


# ----- config ------------------------------------------------------------------------

def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return args[0]
    return annotation


def schema_leaves() -> list[tuple[str, Any, list]]:
    """(dotted key, annotation, bound metadata) of every leaf; dict sections expanded with one key."""
    from pydantic import BaseModel

    from safecritic.configs.schema import Config

    out: list[tuple[str, Any, list]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = _base_type(field.annotation)
            dotted = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, dotted + ".")
            elif typing.get_origin(ann) is dict and isinstance(typing.get_args(ann)[1], type) \
                    and issubclass(typing.get_args(ann)[1], BaseModel):
                walk(typing.get_args(ann)[1], f"{dotted}.{ENV_ID}.")
            else:
                out.append((dotted, ann, list(field.metadata)))

    walk(Config, "")
    return out


def bad_values(annotation: Any, metadata: list) -> list[str]:
    """YAML override values the field must refuse."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return ["1", '"true"', "[true]"]
    if annotation is int:
        values = ["true", '"5"', "1.5", ".nan", "[1]", "{a: 1}"]
    elif annotation is float:
        values = ["true", '"0.5"', ".nan", ".inf", "-.inf", "[0.1]"]
    elif annotation is str:
        return ["5", "true", "[a]", "{a: 1}"]
    elif annotation is Path:
        return ["5", "[a]"]
    elif origin is list:
        element = _base_type(typing.get_args(annotation)[0])
        inner = typing.get_args(element)[0] if typing.get_origin(element) is typing.Annotated else element
        return ["5", '"a"', "{a: 1}"] + {int: ["[true]", "[1.5]"], float: ["[.nan]", "[true]"], str: ["[1]"]}.get(inner, [])
    elif origin is dict:
        return ["[1, 2]", "5", "{reckless: .nan}", "{reckless: true}"]
    else:
        return []
    for bound in metadata:  # one step past each bound
        for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            limit = getattr(bound, attr, None)
            if limit is not None:
                beyond = limit + step  # ge/le: one past; gt/lt: the limit itself
                values.append(repr(beyond) if annotation is int else repr(float(beyond)))
    return values


def run_config(work: Path, guard: Guard) -> Result:
    from safecritic.configs.loader import load_config

    tally = Tally()
    for path in [*sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "docs" / "byo").glob("*.yaml"))]:
        try:
            load_config(path)
            tally.add(f"preset {path.name} loads", True)
        except Exception as exc:  # noqa: BLE001
            tally.add(f"preset {path.name} loads", False, f"{exc.__class__.__name__}: {exc}")
    run_dir = work / "config-never"
    for key, annotation, metadata in schema_leaves():
        for value in bad_values(annotation, metadata):
            code, err = cli_inprocess(train_args(run_dir, "-o", f"{key}={value}"))
            ok, detail = clear_refusal(code, err, key.rsplit(".", 1)[-1])
            tally.add(f"-o {key}={value}", ok and not run_dir.exists(), detail)
    smoke = SMOKE.read_text()
    files = {
        "duplicate top-level key": (smoke + "\nrun:\n  seed: 3\n", "appears twice"),
        "duplicate nested key": (smoke.replace("train:\n", "train:\n  steps: 7\n", 1), "appears twice"),
        "duplicate key in a flow mapping": (smoke.replace("behaviors: {reckless: 0.4,", "behaviors: {reckless: 0.4, reckless: 0.1,"), "appears twice"),
        "empty file": ("", "env: missing"),
        "a list at the top": ("- a\n- b\n", "mapping"),
        "YAML syntax error": (smoke + "\n  : [unclosed\n", "not valid YAML"),
        "tab indentation": (smoke.replace("  episodes: 40", "\tepisodes: 40"), "not valid YAML"),
        "unknown section": (smoke + "\nextra: {a: 1}\n", "unknown key"),
        "missing data section": ("env: {id: x, eval_ids: [x]}\ndeploy: {criteria: {x: {}}}\n", "data: missing"),
        "string number": (smoke.replace("episodes: 40", "episodes: '40'"), "data.episodes"),
        "bool as a count": (smoke.replace("episodes: 40", "episodes: yes"), "data.episodes"),
        "nan in a file": (smoke.replace("calib_fraction: 0.25", "calib_fraction: .nan"), "finite"),
    }
    for name, (text, needle) in files.items():
        path = work / "configs" / f"{name.replace(' ', '_')}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        code, err = cli_inprocess(["train", "-c", str(path), "--run-dir", str(run_dir)])
        tally.add(f"config file: {name}", clear_refusal(code, err, needle)[0] and not run_dir.exists(),
                  clear_refusal(code, err, needle)[1])
    binary = work / "configs" / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    for name, path, needle in (("binary file", binary, "not a text file"), ("a folder", work / "configs", "is a folder"),
                               ("missing file", work / "nope.yaml", "not found")):
        code, err = cli_inprocess(["train", "-c", str(path), "--run-dir", str(run_dir)])
        tally.add(f"config file: {name}", *clear_refusal(code, err, needle))
    for name in ("=3", "data.episodes", "data.episodes.x=1", "data=5"):
        code, err = cli_inprocess(train_args(run_dir, "-o", name))
        tally.add(f"malformed override {name!r}", code == 2 and "Traceback" not in err, err.strip())
    changed = guard.changed()
    tally.add("nothing overwritten by the config cases", not changed, ", ".join(changed))
    return tally.result()


# ----- data --------------------------------------------------------------------------

def copy_dataset(source: str, name: str) -> tuple[str, Path]:
    """A copy of dataset `source` under a new id; (id, its main_data.hdf5)."""
    from safecritic.envs.minari_io import copy_dataset as copy_under

    dataset_id = f"safecritic/pointnav/adv-{name}-v0"
    return dataset_id, copy_under(source, dataset_id)


def _h5_edit(path: Path, episode: str, fn: Callable) -> None:
    import h5py

    with h5py.File(path, "a") as handle:
        fn(handle[episode])


def _replace(group, name: str, values) -> None:
    del group[name]
    group[name] = values


def episode_edits() -> dict[str, Callable]:
    import numpy as np

    def short(name, n):
        return lambda e: _replace(e, name, e[name][:-n])

    def wide(name):
        return lambda e: _replace(e, name, np.concatenate([e[name][:], np.zeros((len(e[name]), 1), e[name].dtype)], 1))

    def nan_at(name):
        def edit(e):
            v = e[name][:].astype(np.float32)
            v.flat[len(v.flat) // 2] = np.nan
            _replace(e, name, v)
        return edit

    return {
        "fewer observations": short("observations", 3), "one observation short": short("observations", 1),
        "cost info short by 2": short("infos/cost", 2), "success info short": short("infos/success", 1),
        "behavior info short": short("infos/behavior", 1), "actions short": short("actions", 1),
        "rewards short": short("rewards", 1), "terminations short": short("terminations", 1),
        "observations of another width": wide("observations"), "actions of another width": wide("actions"),
        "cost info missing": lambda e: e["infos"].__delitem__("cost"),
        "observations missing": lambda e: e.__delitem__("observations"),
        "cost info 2-D": lambda e: _replace(e["infos"], "cost", np.stack([e["infos/cost"][:]] * 2, 1)),
        "cost info as text": lambda e: _replace(e["infos"], "cost", np.array([b"x"] * len(e["infos/cost"]))),
        "NaN observation": nan_at("observations"), "NaN reward": nan_at("rewards"),
        "cost above 1": lambda e: _replace(e["infos"], "cost", e["infos/cost"][:] + 2.0),
    }


def run_data(work: Path, source: str, guard: Guard) -> Result:
    import numpy as np

    from safecritic.configs.errors import DatasetError
    from safecritic.envs.dataset import load_transitions

    tally = Tally()
    run_dir = work / "data-never"

    def refused(case: str, dataset_id: str, main_file: Path, needle: str) -> None:
        before = main_file.read_bytes() if main_file.is_file() else b""
        code, err = cli_inprocess(train_args(run_dir, "-o", f"data.dataset_id={dataset_id}"))
        ok, detail = clear_refusal(code, err, needle)
        after = main_file.read_bytes() if main_file.is_file() else b""
        tally.add(case, ok and before == after and not run_dir.exists(), detail)

    blob = None
    for name, damage in {
        "empty file": lambda b: b"", "truncated to 1 byte": lambda b: b[:1], "truncated to 1 KiB": lambda b: b[:1024],
        "truncated to half": lambda b: b[: len(b) // 2], "truncated by 1 byte": lambda b: b[:-1],
        "random bytes": lambda b: np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8).tobytes(),
        "superblock zeroed": lambda b: bytes(64) + b[64:], "text file": lambda b: b"hello\n" * 100,
    }.items():
        dataset_id, main_file = copy_dataset(source, name.replace(" ", "_"))
        blob = blob or main_file.read_bytes()
        main_file.write_bytes(damage(blob))
        refused(f"main_data.hdf5: {name}", dataset_id, main_file, "main_data.hdf5")
    dataset_id, main_file = copy_dataset(source, "no_file")
    main_file.unlink()
    refused("main_data.hdf5 missing", dataset_id, main_file, dataset_id)
    for name, edit in episode_edits().items():
        dataset_id, main_file = copy_dataset(source, name.replace(" ", "_"))
        _h5_edit(main_file, "episode_3", edit)
        refused(f"episode 3: {name}", dataset_id, main_file, dataset_id)
    # Random damage inside the file: an error or a load, never a traceback (HDF5 has no checksums on
    # data blocks, so a flipped byte in an array can load as a different number: counted apart).
    silent = 0
    rng = random.Random(0)
    for trial in range(12):
        dataset_id, main_file = copy_dataset(source, f"flip{trial}")
        data = bytearray(main_file.read_bytes())
        for _ in range(64):
            data[rng.randrange(len(data))] = rng.randrange(256)
        main_file.write_bytes(bytes(data))
        try:
            load_transitions(dataset_id)
            silent += 1
            tally.add(f"64 random bytes changed (trial {trial})", True)
        except DatasetError:
            tally.add(f"64 random bytes changed (trial {trial})", True)
        except BaseException as exc:  # noqa: BLE001
            tally.add(f"64 random bytes changed (trial {trial})", False, f"{exc.__class__.__name__}: {exc}")
    changed = guard.changed()
    tally.add("nothing overwritten by the data cases", not changed, ", ".join(changed))
    result = tally.result()
    result["random_damage_loaded_without_error"] = silent
    return result


# ----- CLI ---------------------------------------------------------------------------

def run_cli(work: Path, run_dir: Path, artifact: Path, guard: Guard) -> Result:
    tally = Tally()
    afile = work / "a_file"
    afile.write_text("not a folder")
    empty = work / "empty_dir"
    empty.mkdir(exist_ok=True)
    r, a, f = str(run_dir), str(artifact), str(afile)
    cases: list[tuple[list[str], str]] = [
        (["rollout", r, "-n", "-3"], "--episodes"), (["rollout", r, "-n", "0"], "--episodes"),
        (["rollout", r, "-n", "abc"], "--episodes"), (["rollout", r, "-n", "1.5"], "--episodes"),
        (["rollout", r, "--seed", "-1"], "--seed"), (["rollout", r, "--seed", "x"], "--seed"),
        (["rollout", r, "--policy", "bogus"], "--policy"), (["rollout", r, "--env", "Nope-v0", "-n", "1"], "Nope-v0"),
        (["rollout", f], "no run"), (["rollout", str(work / "nowhere")], "no run"), (["rollout", str(empty)], "no run"),
        (["train", "-c", str(SMOKE), "--run-dir", f], "--run-dir"),
        (["train", "-c", str(SMOKE), "--run-dir", f + "/sub"], "--run-dir"),
        (["train", "-c", str(SMOKE), "-o", f"run.runs_dir={f}"], "is a file"),
        (["train", "-c", str(SMOKE), "--run-dir", r], "--resume"),
        (["train", "-c", str(SMOKE), "--run-dir", str(work / "fresh"), "--resume"], "no checkpoint"),
        (train_args(run_dir, "--resume", "-o", "critics.lr=0.1"), "critics.lr"),
        (["export", r, "--out", f], "--out"), (["export", r, "--out", f + "/x"], "--out"),
        (["export", f], "no run"), (["export", str(empty)], "no run"),
        (["export", r, "--variant", "bogus", "--out", str(work / "v")], "bogus"),
        (["export", r, "-o", "critics.lr=0.1", "--out", str(work / "v")], "critics"),
        (["ood-report", r, "--out", f], "--out"), (["ood-report", f], "no run"),
        (["evaluate", f], "manifest.json"), (["evaluate", str(empty)], "manifest.json"),
        (["certify", str(empty)], "manifest.json"),
        (["certify", a, "--report-dir", f, "--no-release"], "--report-dir"),
        (["report", f], "no evaluated artifact"), (["report", str(empty)], "no evaluated artifact"),
        (["bogus-command"], "invalid choice"), (["train", "--bogus-flag"], "unrecognized"),
        (["train", "-c", str(SMOKE), "-o"], "-o"),
    ]
    for argv, needle in cases:
        code, err = cli_inprocess(argv)
        ok, detail = clear_refusal(code, err, needle)
        tally.add("safecritic " + " ".join(x.replace(str(work), "WORK") for x in argv), ok, detail)
    changed = guard.changed()
    tally.add("nothing overwritten by the CLI cases", not changed, ", ".join(changed))
    return tally.result()


# ----- concurrency -------------------------------------------------------------------

def run_concurrency(work: Path, straight: Path) -> Result:
    from safecritic.configs.lock import lock_file_of, run_lock
    from safecritic.envs.minari_io import dataset_exists, dataset_lock

    tally = Tally()
    for trial in range(3):  # two real trainings started together into one folder
        run_dir = work / f"race{trial}"
        procs = [cli(*train_args(run_dir), wait=False) for _ in range(2)]
        outs = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
        codes = sorted(o[2] for o in outs)
        loser = next((o[1] for o in outs if o[2] == 2), "")
        ok = codes == [0, 2] and "Traceback" not in loser and ("in use by another" in loser or "already holds" in loser)
        same, why = weights_equal(straight, run_dir) if ok else (False, "")
        tally.add(f"two trainings into one folder (trial {trial})", ok and same,
                  f"exit codes {codes}; {why}; loser: {loser.strip()[-300:]}")
    for command, argv in (("train", train_args(work / "held")), ("run", ["run", "-c", str(SMOKE), "--run-dir", str(work / "held")])):
        with run_lock(work / "held"):
            out = cli(*argv)
        ok = out.returncode == 2 and f"pid {os.getpid()}" in out.stderr and not (work / "held").exists()
        tally.add(f"`safecritic {command}` while another process holds the run", ok, out.stderr.strip()[-300:])
    dataset_id = "safecritic/pointnav/adv-held-v0"
    with dataset_lock(dataset_id):
        out = cli("collect", "-c", str(SMOKE), "-o", f"data.dataset_id={dataset_id}")
    tally.add("`safecritic collect` while another process collects that id",
              out.returncode == 2 and "in use by another" in out.stderr and not dataset_exists(dataset_id), out.stderr[-300:])
    race_id = "safecritic/pointnav/adv-race-v0"
    procs = [cli("collect", "-c", str(SMOKE), "-o", f"data.dataset_id={race_id}", "-o", "data.episodes=20", wait=False)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    codes = sorted(o[2] for o in outs)
    tally.add("two collects of one id started together", codes == [0, 2] and dataset_exists(race_id)
              and all("Traceback" not in o[1] for o in outs), f"exit codes {codes}: {[o[1][-200:] for o in outs]}")
    # Stale locks: a holder killed -9 (the kernel drops flock), and a lock file naming a dead pid.
    stale_dir = work / "stale"
    out = cli(*train_args(stale_dir), crash="train:pretrain:3")
    out2 = cli(*train_args(stale_dir))
    tally.add("a lock left by a killed trainer blocks nothing", out.returncode == -signal.SIGKILL and out2.returncode == 0,
              out2.stderr[-300:])
    junk_dir = work / "junk-lock"
    lock_file_of(junk_dir).parent.mkdir(parents=True, exist_ok=True)
    lock_file_of(junk_dir).write_text("pid 999999 on elsewhere, `safecritic train`, since yesterday\n")
    out = cli(*train_args(junk_dir))
    tally.add("a lock file naming a dead process blocks nothing", out.returncode == 0, out.stderr[-300:])
    return tally.result()


# ----- kill -9 and resume ------------------------------------------------------------

def resume_after(run_dir: Path) -> subprocess.CompletedProcess:
    """What a user runs next: --resume when a checkpoint survived, else a fresh start."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return cli(*train_args(run_dir, "--resume"))
    return cli(*train_args(run_dir))


def run_kill_resume(work: Path, straight: Path, source: str) -> Result:
    from safecritic.envs.dataset import load_transitions
    from safecritic.envs.minari_io import datasets_root, dataset_exists

    tally = Tally()
    points = ["write:config.yaml", "write:metrics.jsonl", "train:pretrain:1", "train:pretrain:12", "write:last.pt",
              "train:pretrain:17", "train:pretrain:20", "train:critic:1", "train:critic:12", "train:critic:29",
              "train:critic:30", "write:train_summary.json"]
    for point in points:  # exact points: every phase boundary and mid-write
        run_dir = work / f"kill-{point.replace(':', '_')}"
        out = cli(*train_args(run_dir), crash=point)
        if out.returncode != -signal.SIGKILL:
            tally.add(f"train killed at {point}", False, f"not killed (exit {out.returncode}): {out.stderr[-300:]}")
            continue
        nxt = resume_after(run_dir)
        ok, why = weights_equal(straight, run_dir) if nxt.returncode == 0 else (False, nxt.stderr[-400:])
        tally.add(f"train killed at {point}, then resumed", ok, why)
    rng = random.Random(1)
    for trial in range(4):  # a kill at a random moment once training has checkpointed
        run_dir = work / f"kill-random{trial}"
        proc = cli(*train_args(run_dir), wait=False)
        checkpoint = run_dir / "checkpoints" / "last.pt"
        while not checkpoint.exists() and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        nxt = resume_after(run_dir)
        ok, why = weights_equal(straight, run_dir) if nxt.returncode == 0 else (False, nxt.stderr[-400:])
        tally.add(f"train killed at a random moment (trial {trial}, exit {proc.returncode})", ok, why)
    # collect: killed before the staged dataset is published, and at random moments of a longer one.
    import torch

    from safecritic.configs.loader import load_config
    from safecritic.envs.collect import collect_dataset

    longer = ["-o", "data.episodes=200"]
    collect_dataset(load_config(SMOKE, ["data.episodes=200", "data.dataset_id=safecritic/pointnav/adv-ref200-v0"]))
    references = {(): load_transitions(source)[0], tuple(longer): load_transitions("safecritic/pointnav/adv-ref200-v0")[0]}
    trials = [("before publishing", "collect:staged", [])] + [(f"at a random moment ({t})", None, longer) for t in range(3)]
    for index, (case, crash, extra) in enumerate(trials):
        dataset_id = f"safecritic/pointnav/adv-killed{index}-v0"
        args = ["collect", "-c", str(SMOKE), "-o", f"data.dataset_id={dataset_id}", *extra]
        if crash:
            out = cli(*args, crash=crash)
            killed = out.returncode == -signal.SIGKILL
        else:
            proc = cli(*args, wait=False)
            time.sleep(rng.uniform(0.5, 5.0))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            killed = proc.returncode == -signal.SIGKILL
        # Visible under its id only when complete (the kill came after the publishing rename): then it
        # must be the whole dataset; otherwise the next collect must write it.
        published = dataset_exists(dataset_id)
        nxt = None if published else cli(*args)
        ok = (nxt is None or nxt.returncode == 0) and dataset_exists(dataset_id)
        if ok:
            got, reference = load_transitions(dataset_id)[0], references[tuple(extra)]
            ok = torch.equal(got.obs, reference.obs) and torch.equal(got.act, reference.act)
        tally.add(f"collect killed {case} (killed: {killed}, published before the kill: {published}), then "
                  "collected again if needed: the whole dataset", ok,
                  "" if ok else f"published: {published}; next: {nxt and nxt.stderr[-300:]}")
    leftovers = list(datasets_root().glob(".staging-*"))
    tally.add("no staging folder of a dead collector left after the next collect", not leftovers, str(leftovers))
    # export: killed between its two files, then the next commands.
    for point in ("write:controller.pt", "write:manifest.json"):
        out_dir = work / f"export-{point.split(':')[1]}"
        out = cli("export", str(straight), "--out", str(out_dir), crash=point)
        evaluate = cli("evaluate", str(out_dir), "-o", "deploy.episodes=1")
        again = cli("export", str(straight), "--out", str(out_dir))
        from safecritic.deploy.runtime import read_verified

        try:
            read_verified(out_dir)
            verified = True
        except Exception:  # noqa: BLE001
            verified = False
        ok = (out.returncode == -signal.SIGKILL and evaluate.returncode == 2 and "Traceback" not in evaluate.stderr
              and again.returncode == 0 and verified and not list(out_dir.glob(".*.tmp")))
        tally.add(f"export killed at {point}: evaluate refuses, the next export works", ok,
                  f"kill {out.returncode}, evaluate {evaluate.returncode} {evaluate.stderr[-200:]}, export {again.returncode}")
    # The main job killed in training, then run again: same weights, and it finishes.
    run_dir = work / "kill-run"
    job = ["run", "-c", str(SMOKE), "--run-dir", str(run_dir), *[a for o in TINY + ["deploy.ablations=false",
           "deploy.episodes=2"] for a in ("-o", o)], ]
    out = cli(*job, crash="train:critic:12")
    again = cli(*job)
    ok, why = (weights_equal(straight, run_dir) if again.returncode in (0, 1) else (False, again.stderr[-400:]))
    tally.add("`safecritic run` killed in training, then run again", out.returncode == -signal.SIGKILL and ok, why)
    return tally.result()


# ----- main --------------------------------------------------------------------------

def prepare(work: Path) -> tuple[str, Path, Path]:
    """The smoke dataset, an uninterrupted TINY run (the reference) and its exported artifact."""
    from safecritic.configs.loader import load_config
    from safecritic.envs.collect import collect_dataset
    from safecritic.envs.minari_io import dataset_exists

    config = load_config(SMOKE)
    if not dataset_exists(config.data.dataset_id):
        collect_dataset(config)
    straight = work / "straight"
    if not (straight / "train_summary.json").is_file():
        shutil.rmtree(straight, ignore_errors=True)
        out = cli(*train_args(straight))
        if out.returncode != 0:
            raise SystemExit(f"the reference run failed: {out.stderr}")
    artifact = straight / "artifact"
    if not (artifact / "manifest.json").is_file():
        out = cli("export", str(straight))
        if out.returncode != 0:
            raise SystemExit(f"the reference export failed: {out.stderr}")
    return config.data.dataset_id, straight, artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/adversarial_work"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/adversarial.json"))
    parser.add_argument("--only", action="append", help="run only these classes (repeatable)")
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["MINARI_DATASETS_PATH"] = str(work / "minari")  # never the user's datasets
    start = time.perf_counter()
    source, straight, artifact = prepare(work)
    from safecritic.envs.minari_io import dataset_dir

    guard = Guard(straight, dataset_dir(source))
    classes: dict[str, Callable[[], Result]] = {
        "config": lambda: run_config(work, guard),
        "data": lambda: run_data(work, source, guard),
        "cli": lambda: run_cli(work, straight, artifact, guard),
        "concurrency": lambda: run_concurrency(work, straight),
        "kill_resume": lambda: run_kill_resume(work, straight, source),
    }
    results: dict[str, Result] = {}
    seconds: dict[str, float] = {}
    for name, fn in classes.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        results[name] = fn()
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {results[name]['handled']}/{results[name]['tried']} handled ({seconds[name]} s)", file=sys.stderr)
    if (Path(__file__).parent / "adversarial_artifact.py").is_file() and (not args.only or "artifact" in args.only):
        import adversarial_artifact

        t0 = time.perf_counter()
        for name, result in adversarial_artifact.run(work / "artifact_cases", artifact).items():
            results[name] = result
            seconds[name] = round((time.perf_counter() - t0), 1)
    rows = [[name, r["tried"], r["handled"], r["tried"] - r["handled"], seconds.get(name, "")] for name, r in results.items()]
    total = [sum(r["tried"] for r in results.values()), sum(r["handled"] for r in results.values())]
    rows.append(["all", total[0], total[1], total[0] - total[1], round(time.perf_counter() - start, 1)])
    write_json(args.out, {"machine": machine(), "classes": results, "seconds": seconds,
                          "tried": total[0], "handled": total[1]})
    print(markdown_table(["class", "tried", "handled", "not handled", "seconds"], rows))
    for name, r in results.items():
        for failure in r["failures"]:
            print(f"  {name}: {failure['case']}: {failure['detail'][:300]}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
