"""Bring your own task (docs/byo.md): a gymnasium env the project does not ship, wrapped with a
per-step cost, a dataset the user collects, `module:EnvId` and env.imports; no project code changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import REPO

BYO = REPO / "docs" / "byo"
TINY = ["train.steps=60", "train.log_every=20", "train.checkpoint_every=30", "critics.ood.steps=40",
        "policy.prior_steps=40", "critics.hidden=[32, 32]", "critics.ood.hidden=[32, 32]", "policy.hidden=[32, 32]",
        "critics.batch_size=64", "deploy.episodes=3", "deploy.trajectories=2", "data.workers=1"]


@pytest.fixture()
def user_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BYO))
    import keepout_reacher

    return keepout_reacher


def test_a_users_task_runs_through_the_whole_pipeline(user_module, tmp_path, minari_root):
    from safecritic.configs import load_config
    from safecritic.deploy.runtime import load
    from safecritic.pipeline import run_all

    user_module.collect("keepout/reacher/tiny-v0", episodes=24, weights={"reckless": 0.4, "cautious": 0.4, "random": 0.2})
    config = load_config(BYO / "keepout.yaml", [*TINY, "data.dataset_id=keepout/reacher/tiny-v0",
                                                f"run.runs_dir={tmp_path}", f"deploy.releases_dir={tmp_path / 'rel'}"])
    report = run_all(config)
    engine = report["engines"]["keepout_reacher:keepout/ReacherKeepOut-v0"]
    keys = {c["key"] for c in engine["checks"]}
    assert keys == {"accident_rate", "latency", "normalised_cost", "return_reference"}  # no success signal: not judged
    assert engine["reference"]["name"] == "bc_successful"
    assert not engine["summary"]["reports_success"]
    manifest = json.loads((tmp_path / "keepout" / "artifact" / "manifest.json").read_text())
    assert manifest["safe_action"]["module"] is None  # a user's task needs no safe action of its own
    assert manifest["observation_space"]["shape"] == [10]
    action, record = load(tmp_path / "keepout" / "artifact").act([0.0] * 10)
    assert action.shape == (2,)
    text = (tmp_path / "keepout" / "report" / "report.md").read_text()
    assert "mean episode cost / budget 1" in text and "Success" not in text.split("## Ablations")[0]
    ablations = [l.split(" | ") for l in text.split("## Ablations")[1].splitlines() if l.startswith("| gate")]
    assert ablations and all(cells[3] == "-" for cells in ablations)  # no success rate for a task with none
    assert all(not r["reports_success"] for r in report["ablations"])


def test_an_env_id_with_a_module_that_does_not_import_is_named(tmp_path):
    from safecritic.configs import ConfigError, load_config
    from safecritic.envs.validate import check_config

    config = load_config(BYO / "keepout.yaml", ["env.imports=[no_such_module]"])
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'.*PYTHONPATH"):
        check_config(config)
