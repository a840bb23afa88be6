"""The Ray backend (deploy/ray_backend.py) and `safecritic sweep`, on a local Ray head this
module starts on the loopback address and stops again: no other cluster is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import pytest

from safecritic.cli import main
from safecritic.configs import load_config
from safecritic.configs.errors import ConfigError

from conftest import SMOKE

pytest.importorskip("ray")

MUJOCO = 'env.eval_ids=["safecritic/PointNav-v0"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on 127.0.0.1 in a session of its own; its address. Stopped by
    signalling that session only (`ray stop` would stop every Ray on the machine)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths live under it
    # Head and driver agree on no token auth (a head finding ~/.ray/auth_token turns it on;
    # a driver given an address does not), whatever an earlier local Ray left there.
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ)
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)
    try:
        assert head.wait(120) == 0, head.stderr.read()
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        for _ in range(30):
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_ray_tasks_give_the_local_backends_episodes(artifact, ray_head, tmp_path, monkeypatch):  # noqa: F811
    """The same seeds, the same per-episode results, on a cluster whose workers do not see the
    user's module folder: it travels to them (env.imports)."""
    from safecritic.deploy.evaluate import CHUNK, evaluate_artifacts
    from safecritic.deploy.ray_backend import RayRunner

    (tmp_path / "sc_user_task.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(SMOKE, [MUJOCO, f"deploy.episodes={CHUNK + 2}", "data.workers=1", "env.imports=[sc_user_task]"])
    local = evaluate_artifacts([artifact], config)[str(artifact)]["safecritic/PointNav-v0"]
    with RayRunner(ray_head, imports=config.env.imports) as runner:
        remote = evaluate_artifacts([artifact], config, runner=runner)[str(artifact)]["safecritic/PointNav-v0"]
    assert [e.index for e in remote.episodes] == list(range(CHUNK + 2))
    assert [asdict(e) for e in remote.episodes] == [asdict(e) for e in local.episodes]
    assert remote.latencies_us.size == local.latencies_us.size > 0  # timed here, after the rollouts


def test_cli_evaluates_on_a_ray_cluster(artifact, ray_head, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "artifact"
    shutil.copytree(artifact, folder)
    args = ["-o", MUJOCO, "-o", "deploy.episodes=3"]
    assert main(["evaluate", str(folder), *args]) == 0
    local = json.loads((folder / "evaluation.json").read_text())
    assert main(["evaluate", str(folder), *args, "--backend", "ray", "--ray-address", ray_head]) == 0
    remote = json.loads((folder / "evaluation.json").read_text())
    assert "evaluation of" in capsys.readouterr().out
    env = "safecritic/PointNav-v0"
    assert remote["envs"][env]["episodes"] == local["envs"][env]["episodes"]


def test_sweep_writes_one_table_of_every_trial(ray_head, smoke_dataset, tmp_path, capsys):
    tiny = ["-o", MUJOCO, "-o", "deploy.episodes=2", "-o", "critics.ood.steps=50", "-o", "policy.prior_steps=50",
            "-o", "train.checkpoint_every=50"]
    out = tmp_path / "sweep"
    code = main(["sweep", "-c", str(SMOKE), *tiny, "--seeds", "0", "1", "--grid", "train.steps=[50]",
                 "--out", str(out), "--ray-address", ray_head])
    assert code == 0, capsys.readouterr().err
    table = json.loads((out / "sweep.json").read_text())
    assert [(r["trial"], r["seed"], r["overrides"]) for r in table["rows"]] == [
        ("t000", 0, ["train.steps=50"]), ("t001", 1, ["train.steps=50"])]
    for r in table["rows"]:
        assert r["episodes"] == 2 and 0.0 <= r["accident_rate"] <= r["accident_rate_upper"] <= 1.0
        assert (out / "trials" / r["trial"] / "artifact" / "controller.pt").is_file()
    text = (out / "sweep.md").read_text()
    assert "| t001 | 1 | `train.steps=50` | safecritic/PointNav-v0 | 2 |" in text
    assert text in capsys.readouterr().out
    assert main(["sweep", "-c", str(SMOKE), "--out", str(out), "--ray-address", ray_head]) == 2  # nothing overwritten
    assert "holds a sweep already" in capsys.readouterr().err


def test_grid_is_every_combination_of_yaml_lists():
    from safecritic.sweep import parse_grid, trial_table

    assert parse_grid(["train.steps=[100, 200]", "gate.policy_candidates=[4]"]) == [
        ["train.steps=100", "gate.policy_candidates=4"], ["train.steps=200", "gate.policy_candidates=4"]]
    assert [t["name"] for t in trial_table([0, 1], ["a.b=[x, y]"])] == ["t000", "t001", "t002", "t003"]
    assert trial_table([3], [])[0] == {"name": "t000", "seed": 3, "overrides": []}
    for bad in ("train.steps=100", "train.steps=[]", "=[1]", "train.steps"):
        with pytest.raises(ConfigError, match="YAML list"):
            parse_grid([bad])


def test_only_the_users_own_modules_travel_to_the_cluster(tmp_path, monkeypatch):
    from safecritic.deploy.ray_backend import shipped_modules

    (tmp_path / "sc_shipped_pkg").mkdir()
    (tmp_path / "sc_shipped_pkg" / "__init__.py").write_text("")
    (tmp_path / "sc_shipped_pkg" / "task.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = [m.__name__ for m in shipped_modules(["sc_shipped_pkg.task", "numpy", "safecritic.envs", "sc_shipped_pkg"])]
    assert names == ["sc_shipped_pkg"]


def test_ray_not_installed_is_a_clear_error(artifact, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["evaluate", str(artifact), "-o", MUJOCO, "--backend", "ray"]) == 2
    assert 'pip install "safecritic[ray]"' in capsys.readouterr().err


def test_unreachable_or_stray_address_is_refused(artifact, tmp_path, capsys):  # noqa: F811
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["evaluate", str(artifact), "-o", MUJOCO, "--backend", "ray", "--ray-address", address]) == 2
    err = capsys.readouterr().err
    assert address in err and "no Ray cluster reachable" in err
    run_dir = tmp_path / "run"  # `run` refuses it before collecting or training
    assert main(["run", "-c", str(SMOKE), "--run-dir", str(run_dir), "--backend", "ray", "--ray-address", address]) == 2
    assert address in capsys.readouterr().err and not run_dir.exists()
    assert main(["evaluate", str(artifact), "--ray-address", address]) == 2
    assert "needs --backend ray" in capsys.readouterr().err


def test_ray_is_imported_only_when_asked():
    code = """
import sys
import safecritic, safecritic.cli, safecritic.pipeline, safecritic.sweep
import safecritic.deploy.evaluate, safecritic.deploy.certify, safecritic.deploy.runtime
safecritic.cli.build_parser()
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
