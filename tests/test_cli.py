"""The `safecritic` command: help, exit codes, and clear errors with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from safecritic.cli import main

from conftest import SMOKE


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(["safecritic", *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_explains_every_command():
    out = _run("--help")
    assert out.returncode == 0 and "collect" in out.stdout
    out = _run("collect", "--help")
    assert out.returncode == 0 and "MINARI_DATASETS_PATH" in out.stdout and "--overwrite" in out.stdout


def test_export_help_names_every_variant(capsys):
    """The CLI keeps torch out of `--help`, so it spells the variants out: keep them in step."""
    from safecritic.deploy.export import VARIANTS

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in VARIANTS:
        assert name in text, name


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.episods=5", "unknown key"),
        ("data.episodes=-1", "data.episodes = -1"),
        ("env.id=Nope-v0", "unknown env id"),
        ("data.cost_labeler=x", "known labelers"),
    ],
)
def test_bad_config_exits_2_without_traceback(override, expected, capsys):
    assert main(["collect", "-c", str(SMOKE), "-o", override]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_collect_refuses_existing_dataset_via_console_script(smoke_dataset, minari_root):
    out = _run("collect", "-c", str(SMOKE))
    assert out.returncode == 2
    assert "already exists" in out.stderr and "--overwrite" in out.stderr
    assert "Traceback" not in out.stderr


def test_collect_writes_a_dataset(tmp_path):
    out = _run("collect", "-c", str(SMOKE), "-o", "data.episodes=4", env_extra={"MINARI_DATASETS_PATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "4 episodes" in out.stdout
    assert (tmp_path / "safecritic/pointnav/smoke-v0/data/main_data.hdf5").is_file()


def test_missing_config_file_exits_2(capsys, tmp_path):
    assert main(["collect", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
