"""Hardening (issue 28): bad config, data and CLI input, concurrent writers and kill -9 at a phase
boundary each end in a clear error (exit 2, no traceback) or a resume, with nothing overwritten.

Kills are real: a `safecritic` subprocess SIGKILLs itself at a named point (SAFECRITIC_CRASH_AT,
configs/crashpoint.py), so no test sleeps or races. bench/adversarial.py runs the many cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from safecritic.cli import main
from safecritic.configs import ConfigError, DatasetError, RunError, load_config
from safecritic.configs.lock import lock_file_of, run_lock
from safecritic.envs.dataset import load_transitions
from safecritic.envs.minari_io import copy_dataset, dataset_dir, dataset_exists, dataset_lock, datasets_root

from conftest import REPO, SMOKE

# A short schedule, one thread (bit-identical across processes), log lines that do not divide the
# checkpoints (a resume between them must log the same means).
TINY = ["train.steps=30", "train.checkpoint_every=12", "train.log_every=5", "critics.ood.steps=20",
        "policy.prior_steps=20", "run.threads=1"]


def _cli(*args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("SAFECRITIC_CRASH_AT", None)
    if crash:
        env["SAFECRITIC_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "safecritic.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "-c", str(SMOKE), "--run-dir", str(run_dir), *[a for o in TINY for a in ("-o", o)], *extra]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "updates_per_s"} for r in rows]


def _copy_dataset(source: str, name: str) -> Path:
    """A copy of `source` under the id safecritic/pointnav/<name>-v0; returns its main_data.hdf5."""
    return copy_dataset(source, f"safecritic/pointnav/{name}-v0")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, smoke_dataset) -> Path:
    """The uninterrupted reference run (a subprocess, like the killed ones)."""
    run_dir = tmp_path_factory.mktemp("hardening") / "straight"
    out = _cli(*_train_args(run_dir))
    assert out.returncode == 0, out.stderr
    return run_dir


# ----- config ------------------------------------------------------------------------

def test_every_preset_and_example_loads():
    for path in [*sorted((REPO / "configs").glob("*.yaml")), *sorted((REPO / "docs" / "byo").glob("*.yaml"))]:
        load_config(path)


@pytest.mark.parametrize("override, expected", [
    ("train.steps=true", "train.steps = True: Input should be a valid integer"),  # a bool is not a count
    ('train.steps="5"', "train.steps = '5': Input should be a valid integer"),
    ("critics.lr=.nan", "critics.lr = nan: Input should be a finite number"),
    ("gate.safe_action=[.inf, 0]", "gate.safe_action.0 = inf: Input should be a finite number"),
    ("deploy.criteria.safecritic/PointNav-v0.mean_return_min=-.inf", "mean_return_min = -inf: Input should be a finite"),
    ("data.behaviors={reckless: 1, reckless: 2}", "key 'reckless' appears twice"),
])
def test_config_values_keep_their_type_and_are_finite(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(SMOKE, [override])
    assert expected in str(err.value)


def test_exponents_without_a_dot_are_numbers():
    config = load_config(SMOKE, ["critics.lr=1e-3", "policy.prior_lr=5E-4"])  # PyYAML alone reads strings
    assert config.critics.lr == 1e-3 and config.policy.prior_lr == 5e-4


def test_duplicate_keys_in_a_file_are_named_with_their_lines(tmp_path):
    text = SMOKE.read_text().replace("train:\n", "train:\n  steps: 7\n", 1)  # smoke.yaml sets steps below
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    first = text.splitlines().index("  steps: 7") + 1
    assert f"key 'steps' appears twice (first on line {first})" in str(err.value)


def test_an_empty_or_binary_config_names_the_problem(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="env: missing"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\x00\xff\xfe")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(tmp_path / "bin.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


# ----- data --------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "empty", "garbled"])
def test_an_unreadable_dataset_file_is_a_clear_error(smoke_dataset, damage, capsys):
    main_file = _copy_dataset(smoke_dataset, f"damaged-{damage}")
    blob = main_file.read_bytes()
    main_file.write_bytes({"truncated": blob[: len(blob) // 2], "empty": b"",
                           "garbled": bytes(np.random.default_rng(0).integers(0, 256, len(blob), dtype=np.uint8))}[damage])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_transitions(f"safecritic/pointnav/damaged-{damage}-v0")
    code = main(["train", "-c", str(SMOKE), "-o", f"data.dataset_id=safecritic/pointnav/damaged-{damage}-v0",
                 "--run-dir", str(main_file.parent / "never")])
    err = capsys.readouterr().err
    assert code == 2 and "main_data.hdf5" in err and "Traceback" not in err


def _shorten(name: str, n: int):
    def edit(episode: h5py.Group) -> None:
        values = episode[name][:-n]
        del episode[name]
        episode[name] = values
    return edit


def _widen(episode: h5py.Group) -> None:
    obs = episode["observations"][:]
    del episode["observations"]
    episode["observations"] = np.concatenate([obs, np.zeros((len(obs), 1), obs.dtype)], axis=1)


@pytest.mark.parametrize("edit, expected", [
    (_shorten("observations", 3), "episode 3: observations has shape"),
    (_shorten("infos/cost", 2), "episode 3: infos['cost'] has shape"),
    (_shorten("infos/behavior", 1), "episode 3: infos['behavior'] has shape"),  # used to load misaligned
    (_widen, "episode 3: observations has shape (152, 13), expected (152, 12)"),
])
def test_an_episode_that_disagrees_with_its_length_or_spaces_is_named(smoke_dataset, edit, expected):
    main_file = _copy_dataset(smoke_dataset, "inconsistent")
    with h5py.File(main_file, "a") as handle:
        edit(handle["episode_3"])
    with pytest.raises(DatasetError) as err:
        load_transitions("safecritic/pointnav/inconsistent-v0")
    assert expected in str(err.value) and "re-collect" in str(err.value)


# ----- CLI ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["rollout", "RUN", "-n", "-3"], "argument -n/--episodes: '-3' is not a whole number >= 1"),
    (["rollout", "RUN", "--seed", "-1"], "argument --seed: '-1' is not a whole number >= 0"),
    (["train", "--run-dir", "FILE"], "argument --run-dir: 'FILE' cannot be a folder: FILE is a file"),
    (["export", "RUN", "--out", "FILE/sub"], "cannot be a folder: FILE is a file"),
])
def test_bad_arguments_exit_2_with_the_reason(tmp_path, argv, expected, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = [a.replace("FILE", str(afile)).replace("RUN", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert expected.replace("FILE", str(afile)) in capsys.readouterr().err
    assert afile.read_text() == "not a folder"


# ----- concurrency -------------------------------------------------------------------

def test_a_second_writer_of_a_run_folder_is_refused_and_names_the_first(tmp_path, smoke_dataset):
    run_dir = tmp_path / "busy"
    with run_lock(run_dir):  # this process is "the other training run"
        out = _cli(*_train_args(run_dir))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"run folder {run_dir} is in use by another safecritic process (pid {os.getpid()} on" in out.stderr
    assert not run_dir.exists()  # refused before writing anything


def test_a_second_collector_of_a_dataset_is_refused(tmp_path):
    dataset_id = "safecritic/pointnav/contended-v0"
    with dataset_lock(dataset_id):
        out = _cli("collect", "-c", str(SMOKE), "-o", f"data.dataset_id={dataset_id}")
    assert out.returncode == 2 and "in use by another safecritic process" in out.stderr
    assert not dataset_exists(dataset_id)


# ----- kill -9 and resume ------------------------------------------------------------

def test_a_kill_in_pretraining_resumes_to_the_same_weights(tmp_path, straight_run):
    run_dir = tmp_path / "killed"
    out = _cli(*_train_args(run_dir), crash="train:pretrain:17")  # after the checkpoint at 12, before 24
    assert out.returncode == -signal.SIGKILL
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 12
    # The dead process's lock is gone with it; a plain `train` refuses to overwrite, --resume continues.
    assert main(_train_args(run_dir)) == 2
    out = _cli(*_train_args(run_dir, "--resume"))
    assert out.returncode == 0, out.stderr
    a, b = _weights(straight_run), _weights(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(straight_run) == _metrics(run_dir)
    assert json.loads((run_dir / "train_summary.json").read_text())["phase"] == "done"


def test_a_kill_while_a_checkpoint_is_written_keeps_the_last_one_and_resumes(tmp_path, straight_run):
    run_dir = tmp_path / "mid-write"
    out = _cli(*_train_args(run_dir), crash="write:last.pt")  # the first checkpoint: temp file written, not renamed
    assert out.returncode == -signal.SIGKILL
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    assert list((run_dir / "checkpoints").glob(".last.pt.*.tmp"))  # the dead writer's temp file
    out = _cli(*_train_args(run_dir))  # no checkpoint: nothing to resume, starts over
    assert out.returncode == 0, out.stderr
    assert not list((run_dir / "checkpoints").glob(".last.pt.*.tmp"))  # swept
    a, b = _weights(straight_run), _weights(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_kill_before_a_dataset_is_published_leaves_no_dataset_and_the_next_collect_works(tmp_path):
    dataset_id = "safecritic/pointnav/killed-v0"
    args = ["collect", "-c", str(SMOKE), "-o", f"data.dataset_id={dataset_id}", "-o", "data.episodes=4"]
    out = _cli(*args, crash="collect:staged")
    assert out.returncode == -signal.SIGKILL
    assert not dataset_exists(dataset_id) and not dataset_dir(dataset_id).exists()
    staged = list(datasets_root().glob(".staging-*"))
    assert staged  # the dead collector's half-published dataset, never under the real id
    assert _cli(*args).returncode == 0
    assert dataset_exists(dataset_id) and len(load_transitions(dataset_id)[0].episode_ids()) == 4
    assert not any(p.exists() for p in staged)  # swept by the next collector


@pytest.mark.parametrize("file", ["manifest.json", "digest"])
def test_a_kill_during_export_leaves_the_next_command_working(tmp_path, straight_run, file):
    from safecritic.deploy.runtime import ArtifactError, load

    out_dir = tmp_path / "artifact"
    out = _cli("export", str(straight_run), "--out", str(out_dir), crash=f"write:{file}")
    assert out.returncode == -signal.SIGKILL
    assert not (out_dir / file).exists()
    with pytest.raises(ArtifactError):  # an unfinished artifact is refused, never trusted
        load(out_dir)
    out = _cli("export", str(straight_run), "--out", str(out_dir))
    assert out.returncode == 0, out.stderr
    assert not list(out_dir.glob(".*.tmp"))
    from safecritic.deploy.runtime import read_verified

    assert read_verified(out_dir).digest == (out_dir / "digest").read_text().strip()


def test_the_lock_file_sits_beside_the_run_folder(tmp_path):
    assert lock_file_of(tmp_path / "runs" / "smoke") == (tmp_path / "runs" / ".smoke.lock").resolve()
    with run_lock(tmp_path / "runs" / "smoke"):
        text = lock_file_of(tmp_path / "runs" / "smoke").read_text()
        with run_lock(tmp_path / "runs" / "smoke"):  # re-entrant in one process
            pass
    assert f"pid {os.getpid()}" in text
    assert not (tmp_path / "runs" / "smoke").exists()
    with pytest.raises(RunError, match="is a file"):
        (tmp_path / "runs" / "afile").write_text("x")
        with run_lock(tmp_path / "runs" / "afile"):
            pass
