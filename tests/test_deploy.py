"""deploy/ and the gated controller: parity, determinism, faults, refusals, certification, e2e."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from safecritic.cli import main
from safecritic.configs import load_config
from safecritic.controller.gate import (CODE_CANDIDATE, CODE_FALLBACK, CODE_FAULT, CODE_POLICY, SEGMENT_FRACTIONS, GatedController,
                                       PolicyController)
from safecritic.controller.training import load_trained
from safecritic.deploy.certify import binom_cdf, clopper_pearson, judge
from safecritic.deploy.export import parity
from safecritic.deploy.runtime import ArtifactError, ObservationError, load
from safecritic.envs.dataset import load_offline_data, successful_episode_rows
from safecritic.pipeline import export

from conftest import SMOKE


def test_export_is_parity_checked_and_manifest_complete(artifact, observations, smoke_run):
    manifest = json.loads((artifact / "manifest.json").read_text())
    for key in ("format_version", "observation_space", "action_space", "thresholds", "candidates", "dataset",
                "config", "training", "torch_version", "files", "record_fields"):
        assert key in manifest, key
    assert manifest["parity_max_abs_diff"] <= 1e-5
    assert manifest["safe_action"]["module"] == "PointNavBrake"  # the task's safe action, from its own module
    config, model, _ = load_trained(smoke_run)
    eager = GatedController(model, config.gate)
    scripted = torch.jit.load(str(artifact / "controller.pt"))
    assert parity(eager, scripted, observations) <= 1e-5


def test_runtime_frozen_module_matches_the_eager_controller(artifact, observations, smoke_run):
    """The runtime freezes the scripted file at load; its outputs stay within the parity bound."""
    config, model, _ = load_trained(smoke_run)
    with torch.no_grad():
        eager_action, eager_record = GatedController(model, config.gate)(observations)
    action, record = load(artifact).act(observations.numpy())
    np.testing.assert_allclose(action, eager_action.numpy(), atol=1e-5)
    np.testing.assert_allclose(record, eager_record.numpy(), atol=1e-5, equal_nan=True)


def test_same_observation_same_action(artifact, observations):
    a = load(artifact)
    b = load(artifact)
    act1, rec1 = a.act(observations.numpy())
    act2, rec2 = a.act(observations.numpy())
    act3, _ = b.act(observations.numpy())
    np.testing.assert_array_equal(act1, act2)
    np.testing.assert_array_equal(act1, act3)
    np.testing.assert_array_equal(rec1, rec2)
    single, _ = a.act(observations[3].numpy())
    np.testing.assert_allclose(single, act1[3], atol=1e-6)  # batch or not, the same decision


def test_actions_lie_in_the_bounds(artifact):
    controller = load(artifact)
    wild = np.random.default_rng(0).normal(0, 50, size=(500, controller.obs_dim)).astype(np.float32)
    action, record = controller.act(wild)
    assert np.isfinite(action).all()
    assert (action >= -1).all() and (action <= 1).all()
    assert set(np.unique(record[:, 0])) <= {0.0, 1.0, 2.0}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observation_gives_safe_action_and_fault_code(artifact, observations, bad):
    controller = load(artifact)
    obs = observations[:4].numpy().copy()
    obs[1, 3] = bad
    action, record = controller.act(obs)
    assert np.isfinite(action).all()
    np.testing.assert_array_equal(action[1], controller.manifest["safe_action"]["constant"])
    assert record[1, 0] == CODE_FAULT and controller.explain(record[1])["decision"] == "fault"
    assert (record[[0, 2, 3], 0] != CODE_FAULT).all()  # the other rows are unaffected


@pytest.mark.parametrize("variant", ["gated", "gate_off"])
def test_an_observation_beyond_the_judged_limit_is_a_fault(smoke_run, observations, variant, tmp_path):
    """Finite but absurd (over JUDGED_LIMIT data std once normalised, where the critics' sums
    overflow): the safe action with the fault code, in the gate and in a bare policy alike."""
    assert main(["export", str(smoke_run), "--out", str(tmp_path / variant), "--variant", variant]) == 0
    controller = load(tmp_path / variant)
    for huge in [1e19, 1e30, float(np.finfo(np.float32).max), -1e37]:
        obs = observations[:3].numpy().copy()
        obs[1, 0] = huge
        action, record = controller.act(obs)
        np.testing.assert_array_equal(action[1], controller.manifest["safe_action"]["constant"])
        assert record[1, 0] == CODE_FAULT, huge
        assert (record[[0, 2], 0] != CODE_FAULT).all()
    obs[1, 0] = observations[1, 0].item() + 100.0  # far, but well inside the limit: judged, not faulted
    assert controller.act(obs)[1][1, 0] != CODE_FAULT


def test_a_non_finite_value_inside_the_gate_is_a_fault(smoke_run, observations):
    """Overflowing critics (inf/NaN values for a finite observation) give the fault code and the
    safe action, not a decision taken on NaN comparisons."""
    from safecritic.deploy.export import FULL, build_controller, load_for_export

    config, model, _, _ = load_for_export(smoke_run)
    gate = build_controller(model, config, FULL)
    obs = observations[:3].clone()
    real_scores = gate.scores_at

    def overflowing(x, clean):
        cands, q_r, q_c, ood, score = real_scores(x, clean)
        return cands, q_r, q_c, ood.index_fill(1, torch.tensor([1]), float("nan")), score

    gate.scores_at = overflowing
    action, record = gate(obs)
    assert record[1, 0] == CODE_FAULT and torch.equal(action[1], gate.safe_action)
    assert (record[[0, 2], 0] != CODE_FAULT).all()


def test_wrong_observation_shape_or_type_is_a_clear_error(artifact):
    controller = load(artifact)
    with pytest.raises(ObservationError, match=r"shape \(12,\) or \(batch, 12\), got \(11,\)"):
        controller.act(np.zeros(11, np.float32))
    with pytest.raises(ObservationError, match="shape"):
        controller.act(np.zeros((2, 3, 12), np.float32))
    with pytest.raises(ObservationError, match="numeric"):
        controller.act(np.array(["a"] * 12))
    action, _ = controller.act(np.zeros(12, dtype=np.float64))  # float64 is converted, not refused
    assert action.dtype == np.float32


def test_tampered_or_truncated_controller_is_refused(artifact, tmp_path):
    for name, mutate in [("tampered", lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:]),
                         ("truncated", lambda b: b[: len(b) // 2])]:
        copy = tmp_path / name
        shutil.copytree(artifact, copy)
        blob = (copy / "controller.pt").read_bytes()
        (copy / "controller.pt").write_bytes(mutate(blob))
        with pytest.raises(ArtifactError, match="controller.pt does not match its manifest"):
            load(copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not found"):
        load(tmp_path / "empty")


def test_a_run_directory_given_for_its_artifact_is_pointed_to_it(artifact, tmp_path, capsys):
    """A user who passes runs/<name> to evaluate/certify is told where the artifact is; `report` on a
    folder that never went through `safecritic run` is refused with the command that fits."""
    run_dir = tmp_path / "run"
    shutil.copytree(artifact, run_dir / "artifact")
    with pytest.raises(ArtifactError, match=f"run directory, not an artifact folder.*{run_dir / 'artifact'}"):
        load(run_dir)
    assert main(["certify", str(run_dir), "--no-release"]) == 2
    assert "pass that folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "safecritic certify ARTIFACT_DIR" in capsys.readouterr().err


def test_runtime_needs_only_torch_and_numpy(artifact):
    """Load and run the artifact with every training package made unimportable (and cryptography:
    it is needed only to check signatures, when trusted keys are given)."""
    code = f"""
import sys
BLOCKED = ("gymnasium", "mujoco", "pybullet", "minari", "pydantic", "yaml", "matplotlib", "h5py", "tqdm", "cryptography",
           "safecritic.configs", "safecritic.critics", "safecritic.controller", "safecritic.envs",
           "safecritic.cli", "safecritic.pipeline")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(BLOCKED):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
from safecritic.deploy.runtime import load
c = load({str(artifact)!r})
a, r = c.act(np.zeros(12, np.float32))
assert a.shape == (2,) and np.isfinite(a).all()
leaked = [m for m in sys.modules if m.startswith(BLOCKED)]
assert not leaked, leaked
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_proposal_runs_whenever_it_is_admissible(smoke_run, observations):
    """Simplex: code 0 and the actor's own mode wherever the proposal passes both vetoes; another
    candidate only where it is vetoed, the best admissible one by Q_R + w log pi; the safe action
    only where nothing is admissible."""
    config, model, _ = load_trained(smoke_run)
    free = GatedController(model, config.gate.model_copy(update={"cost_threshold": 1e9}), use_ood=False)
    action, rec = free(observations)
    assert (rec[:, 0] == CODE_POLICY).all()
    mode = PolicyController(model, config.gate, "actor")(observations)[0]
    torch.testing.assert_close(action, mode)  # the gate's proposal is the actor alone's action
    with torch.no_grad():
        cands, q_r, q_c, ood, score = free.scores(observations)
    threshold = float(q_c.median())  # some rows vetoed, some not
    gate = GatedController(model, config.gate.model_copy(update={"cost_threshold": threshold}), use_ood=False)
    action, rec = gate(observations)
    ok = q_c <= threshold
    assert torch.equal(rec[:, 0] == CODE_POLICY, ok[0])
    other = ~ok[0] & ok.any(0)
    assert other.any() and torch.equal(rec[:, 0] == CODE_CANDIDATE, other)
    best = torch.where(ok, score, float("-inf")).argmax(0)
    torch.testing.assert_close(rec[other, 1], q_r.gather(0, best.view(1, -1))[0][other])
    assert (rec[~ok.any(0), 0] == CODE_FALLBACK).all()
    assert parity(gate, torch.jit.script(gate), observations) <= 1e-5


def test_points_between_the_safe_action_and_the_proposal_are_candidates(smoke_run, observations):
    """Just before the safe action, the gate offers safe + f (proposal - safe) for each f of SEGMENT_FRACTIONS; where
    the proposal is vetoed but such a point is not, the gate runs an admissible candidate (code 1), not its fallback."""
    config, model, _ = load_trained(smoke_run)
    free = GatedController(model, config.gate.model_copy(update={"cost_threshold": 1e9}), use_ood=False)
    with torch.no_grad():
        cands, q_r, q_c, ood, score = free.scores(observations)
    proposal, safe = cands[0], cands[-1]
    segment = cands[-1 - len(SEGMENT_FRACTIONS):-1]
    for f, row in zip(SEGMENT_FRACTIONS, segment):
        torch.testing.assert_close(row, safe + f * (proposal - safe))
    # A threshold between the proposal's and the least risky segment point's, at the states where one is safer.
    lower = q_c[-1 - len(SEGMENT_FRACTIONS):-1].min(0).values
    safer = lower < q_c[0]
    assert safer.any()
    threshold = float(((lower + q_c[0]) / 2)[safer].median())
    gate = GatedController(model, config.gate.model_copy(update={"cost_threshold": threshold}), use_ood=False)
    action, rec = gate(observations)
    rescued = (q_c[0] > threshold) & (lower <= threshold)
    assert rescued.any() and (rec[rescued, 0] == CODE_CANDIDATE).all()
    assert parity(gate, torch.jit.script(gate), observations) <= 1e-5


def test_fallback_is_the_tasks_safe_action_and_faults_the_constant(smoke_run, observations):
    """Nothing admissible: the task's safe action runs (PointNav's brake, from envs/pointnav); a
    non-finite observation gets the configured constant instead. The gate reads no observation entry
    itself: the task's module does."""
    from safecritic.envs.pointnav.interface import PointNavBrake

    config, model, _ = load_trained(smoke_run)
    strict = GatedController(model, config.gate.model_copy(update={"cost_threshold": -1.0}))
    action, rec = strict(observations)
    assert (rec[:, 0] == CODE_FALLBACK).all()
    brake = PointNavBrake(model.act_low, model.act_high)(observations)
    torch.testing.assert_close(action, brake)
    assert (brake - strict.safe_action).abs().max() > 0.1  # braking differs from the constant on moving states
    bad = observations[:4].clone()
    bad[:, 2] = float("nan")
    action, rec = torch.jit.script(strict)(bad)
    assert (rec[:, 0] == CODE_FAULT).all()
    torch.testing.assert_close(action, strict.safe_action.expand_as(action))


def test_a_task_without_a_safe_action_falls_back_to_the_proposal(smoke_run, observations):
    """No task safe action: with nothing admissible the actor's proposal runs (code 2; at such a state the
    constraint fitted it to minimise the risk), not the constant; faults still get the configured constant."""
    from safecritic.controller.model import ConstantAction

    config, model, _ = load_trained(smoke_run)
    model = __import__("copy").deepcopy(model)
    model.safe_action = ConstantAction(torch.zeros(2))
    gate = GatedController(model, config.gate.model_copy(update={"cost_threshold": -1.0, "safe_action": [0.5, -0.5]}))
    action, rec = gate(observations)
    assert (rec[:, 0] == CODE_FALLBACK).all()
    torch.testing.assert_close(action, PolicyController(model, config.gate, "actor")(observations)[0])
    assert (action - torch.tensor([0.5, -0.5])).abs().max() > 0.1
    assert parity(gate, torch.jit.script(gate), observations) <= 1e-5
    bad = observations[:3].clone()
    bad[:, 0] = float("inf")
    action, rec = gate(bad)
    torch.testing.assert_close(action, torch.tensor([0.5, -0.5]).expand_as(action))
    assert (rec[:, 0] == CODE_FAULT).all()


def test_export_gate_overrides_and_refuses_training_keys(smoke_run, observations, tmp_path, capsys):
    """`export -o gate.*` rebuilds the gate without retraining; anything else needs a new run."""
    out = tmp_path / "strict"
    assert main(["export", str(smoke_run), "--out", str(out), "-o", "gate.cost_threshold=0.01"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["thresholds"]["cost"] == 0.01 and manifest["parity_max_abs_diff"] <= 1e-5
    action, record = load(out).act(observations.numpy())
    assert np.isfinite(action).all() and np.isfinite(record[:, 1:4]).all()
    capsys.readouterr()
    assert main(["export", str(smoke_run), "--out", str(tmp_path / "x"), "-o", "critics.gamma=0.5"]) == 2
    assert "only gate.* settings" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_reference_prior_is_fitted_to_the_successful_episodes_only(smoke_run):
    """pi_ref and pi_beta differ (two fits), and pi_ref rates the successful episodes' actions
    higher, relative to pi_beta, than the other episodes' actions."""
    config, model, _ = load_trained(smoke_run)
    data = load_offline_data(config.data)
    mask = successful_episode_rows(data.train, data.info.has_success, config.data.successful_quantile,
                                   config.data.successful_max_cost)
    assert 0 < int(mask.sum()) < len(mask)
    x, a = model.normalize_obs(data.train.obs), model.to_unit_action(data.train.act)
    with torch.no_grad():
        gain = model.reference.log_prob(x, a) - model.prior.log_prob(x, a)
    assert gain[mask].mean() > gain[~mask].mean() + 1.0


def test_gate_ood_score_is_the_models_with_the_prior_term(smoke_run, observations):
    """The gate thresholds model.ood_score (contrastive + c x prior NLL), the score tau was calibrated on."""
    config, model, _ = load_trained(smoke_run)
    assert float(model.ood_prior_scale) > 0.0  # the default critics.ood.prior_weight is on
    ctrl = GatedController(model, config.gate)
    _, rec = ctrl(observations)
    x = model.normalize_obs(observations)
    proposal = ctrl.scores(observations)[0][0]  # the policy's proposal: the record's last column scores it
    expected = model.ood_score(x, proposal)
    torch.testing.assert_close(rec[:, 5], expected, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(expected, model.detector.score(x, proposal))  # the prior term counts


def test_clopper_pearson_bounds():
    low, high = clopper_pearson(0, 200)
    assert low == 0.0 and math.isclose(high, 1 - 0.05 ** (1 / 200), rel_tol=1e-6)
    low, high = clopper_pearson(200, 200)
    assert high == 1.0 and math.isclose(low, 0.05 ** (1 / 200), rel_tol=1e-6)
    low, high = clopper_pearson(10, 100)
    assert math.isclose(binom_cdf(10, 100, high), 0.05, rel_tol=1e-4)
    assert low < 0.1 < high


def test_judge_names_each_criterion():
    from safecritic.configs.schema import CriteriaConfig

    summary = {"accident_rate_upper": 0.03, "success_rate": 0.85, "mean_return": 30.0, "mean_cost": 12.0,
               "latency_us": {"p99": 500.0}, "reports_success": True}
    criteria = CriteriaConfig(success_rate_min=0.9, mean_return_min=35.0, cost_budget=10.0)
    checks = {c["criterion"]: c["passed"] for c in judge(summary, criteria)}
    assert checks == {"accident rate upper bound (CP 95%)": True, "success rate": False, "p99 latency (ms)": True,
                      "mean episode cost / budget 10": False, "mean return": False}
    # A task without a success signal is judged without it by default, and refused with the fix when asked for one.
    no_goal = {**summary, "reports_success": False}
    assert "success rate" not in {c["criterion"] for c in judge(no_goal, CriteriaConfig())}
    with pytest.raises(ValueError, match="success_rate_min: null"):
        judge(no_goal, CriteriaConfig(success_rate_min=0.5))


def test_a_task_without_a_success_signal_prints_no_success_rate():
    """Every table (report, CLI, bench/) prints "-", not 0.0%, where the env reports no success."""
    from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes
    from safecritic.deploy.report import success_cell
    from safecritic.envs.rollout import summarize

    hopper = summarize(behavior_runs_on_evaluation_episodes("safecritic/HopperVelocity-v0", "mixed", 2, 1000))
    pointnav = summarize(behavior_runs_on_evaluation_episodes("safecritic/PointNav-v0", "cautious", 2, 1000))
    assert not hopper["reports_success"] and success_cell(hopper) == "-"
    assert pointnav["reports_success"] and success_cell(pointnav) == f"{100 * pointnav['success_rate']:.1f}%"


def test_return_bar_of_a_behaviour_is_judged_on_the_same_episodes():
    """The relative return criterion compares with the behaviour on the evaluation's own seeds."""
    from safecritic.configs.schema import CriteriaConfig
    from safecritic.deploy.baselines import behavior_runs_on_evaluation_episodes
    from safecritic.envs.registry import make_behavior
    from safecritic.envs.faults import make_env
    from safecritic.envs.rollout import evaluation_seed, run_episode, summarize

    ref = summarize(behavior_runs_on_evaluation_episodes("safecritic/PointNav-v0", "cautious", 3, 1000))
    assert ref == summarize(behavior_runs_on_evaluation_episodes("safecritic/PointNav-v0", "cautious", 3, 1000))  # deterministic
    env = make_env("safecritic/PointNav-v0")
    by_hand = []
    for i in range(3):
        b = make_behavior("safecritic/PointNav-v0", "cautious")
        b.reset(np.random.default_rng([1000, i, 1]))
        by_hand.append(run_episode(env, b.act, seed=evaluation_seed(1000, i)).ret)
    assert math.isclose(ref["mean_return"], float(np.mean(by_hand)))
    criteria = CriteriaConfig(return_reference="cautious")
    summary = {"accident_rate_upper": 0.0, "success_rate": 1.0, "mean_return": ref["mean_return"] - 0.1,
               "mean_cost": 0.0, "latency_us": {"p99": 100.0}}
    checks = {c["criterion"]: c for c in judge(summary, criteria, ref["mean_return"])}
    check = checks["mean return vs cautious (same episodes)"]
    assert not check["passed"] and check["limit"] == ref["mean_return"]
    with pytest.raises(ValueError, match="same episodes"):
        judge(summary, criteria)


def test_return_gap_splits_into_unfinished_episodes_and_pace():
    """A failed return bar names what to fix: the episodes the controller did not finish and
    the pace of those both finished; the parts are per-episode means and sum to the gap."""
    from safecritic.deploy.baselines import return_gap
    from safecritic.deploy.report import _gap_line, _gap_note

    def ours(index, ret, success, accident=False, length=100):
        return {"index": index, "seed": 1000 + index, "ret": ret, "success": success, "accident": accident,
                "length": length}

    episodes = [ours(2, 36.0, True, length=110), ours(0, 20.0, False, length=200), ours(1, 5.0, False, True, 30),
                ours(3, 30.0, True, length=150)]  # any order: matched by index
    reference = [{"ret": r, "success": ok, "length": n} for r, ok, n in
                 [(37.0, True, 100), (36.0, True, 100), (36.6, True, 104), (10.0, False, 200)]]
    gap = return_gap(episodes, reference)
    assert math.isclose(gap["gap"], ((20 - 37) + (5 - 36) + (36 - 36.6) + (30 - 10)) / 4)
    parts = [gap[k]["contribution"] for k in ("unfinished", "both_finished", "only_controller_finished")]
    assert math.isclose(sum(parts), gap["gap"])
    assert math.isclose(parts[0], ((20 - 37) + (5 - 36)) / 4) and math.isclose(parts[1], -0.6 / 4)
    assert [(e["index"], e["outcome"], e["seed"]) for e in gap["unfinished"]["list"]] == [(0, "timeout", 1000), (1, "accident", 1001)]
    assert (gap["both_finished"]["episodes"], gap["both_finished"]["mean_length"], gap["both_finished"]["reference_mean_length"]) == (1, 110, 104)
    assert gap["only_controller_finished"]["episodes"] == 1
    line = _gap_line("cautious", gap)
    assert line.startswith("Return against `cautious`, per episode: -7.15 = -12.00 from the 2 episode(s) the controller "
                           "did not finish (timeout #0, accident #1); -0.15 from the 1 both finished (pace: 110.0 vs "
                           "104.0 steps); +5.00 from the 1 only the controller finished.")
    note = _gap_note({"key": "return_reference"}, {"reference": {"gap": gap}})
    assert note == "; -12.00 from 2 unfinished episode(s), -0.15 from the pace of the 1 both finished"
    assert _gap_note({"key": "success_rate"}, {"reference": {"gap": gap}}) == ""
    with pytest.raises(ValueError, match="evaluation's episodes"):
        return_gap(episodes[:3], reference)
    none_finished = return_gap([ours(0, 1.0, False)], [{"ret": 2.0, "success": False, "length": 200}])
    assert none_finished["both_finished"]["mean_length"] is None and "pace" not in _gap_line("cautious", none_finished)
    json.dumps(none_finished, allow_nan=False)  # report.json stays strict JSON
    # A task without a success signal: no episode is "finished", so no split is claimed.
    assert _gap_line("slow", gap, reports_success=False) == (
        "Return against `slow`, per episode: -7.15 (the task reports no success, so the gap is not split by "
        "finished episodes).")
    assert _gap_note({"key": "return_reference"}, {"reference": {"gap": gap}, "summary": {"reports_success": False}}) == ""


def test_criterion_numbers_keep_the_digits_that_decide_a_bar():
    """A return of 37.00 against 37.11 must not read "37"; rates and milliseconds keep 4 significant digits."""
    from safecritic.deploy.report import _criterion_number

    assert _criterion_number(37.0) == "37.00" and _criterion_number(37.114) == "37.11"
    assert [_criterion_number(x) for x in (0.995, 0.05, 0.014811, 1.0)] == ["0.995", "0.05", "0.01481", "1"]
    assert _criterion_number(-12.5) == "-12.50"


def test_latency_is_timed_after_the_rollouts_in_the_calling_process(artifact):
    """Certification's batch-1 latency comes from LATENCY_CALLS calls timed once the worker pool has
    finished (the pool's rollouts would share the cores), and the caller's torch threads survive it."""
    from safecritic.deploy.evaluate import LATENCY_CALLS, evaluate_artifacts, summarize_env

    config = load_config(SMOKE, ["deploy.episodes=2", "data.workers=2", 'env.eval_ids=["safecritic/PointNav-v0"]'])
    threads = torch.get_num_threads()
    ev = evaluate_artifacts([artifact], config)[str(artifact)]["safecritic/PointNav-v0"]
    assert torch.get_num_threads() == threads
    assert ev.latencies_us.shape == (LATENCY_CALLS,) and (ev.latencies_us > 0).all()
    assert summarize_env(ev)["latency_us"]["calls"] == LATENCY_CALLS and len(ev.episodes) == 2


def test_a_kept_path_carries_each_steps_cost_beside_its_record(artifact):
    """deploy.trajectories keeps, per step, the observation, the gate's record and the step's cost
    (bench/cost_steps.py reads where the cost was paid from them): one cost per record, summing
    to the episode's cost."""
    from safecritic.deploy.evaluate import evaluate_artifacts

    config = load_config(SMOKE, ["deploy.episodes=3", "deploy.trajectories=3", "data.workers=1",
                                 'env.eval_ids=["safecritic/PointNav-v0"]'])
    episodes = evaluate_artifacts([artifact], config)[str(artifact)]["safecritic/PointNav-v0"].episodes
    for e in episodes:
        assert len(e.trace["cost"]) == len(e.trace["record"]) == e.length == len(e.trace["obs"]) - 1
        assert math.isclose(sum(e.trace["cost"]), e.cost)
        assert (e.trace["cost"][-1] > 0) == e.accident  # PointNav: a cost ends the episode, on its last step


def test_certification_report_shows_the_reference(artifact, tmp_path):
    key = "deploy.criteria.safecritic/PointNav-v0.return_reference"
    main(["certify", str(artifact), "-o", f"deploy.releases_dir={tmp_path / 'rel'}", "-o", "deploy.episodes=2",
          "-o", "data.workers=1", "-o", "deploy.ablations=false", "-o", f"{key}=cautious",
          "--report-dir", str(tmp_path / "report")])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    engine = report["engines"]["safecritic/PointNav-v0"]
    ref = engine["reference"]
    assert ref["name"] == "cautious"
    assert "mean return vs cautious (same episodes)" in {c["criterion"] for c in engine["checks"]}
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Reference `cautious` on the same episodes" in text and "Return against `cautious`, per episode:" in text
    gap = ref["gap"]  # where the return gap comes from, on the same two episodes
    assert math.isclose(gap["gap"], engine["summary"]["mean_return"] - ref["mean_return"])
    assert gap["unfinished"]["episodes"] + gap["both_finished"]["episodes"] + gap["only_controller_finished"]["episodes"] == 2
    bar = next(c for c in engine["checks"] if c["key"] == "return_reference")
    failures = [f for f in report["failed_criteria"] if "mean return vs cautious" in f]
    assert len(failures) == (0 if bar["passed"] else 1)
    assert report["safe_action"] == {"constant": [0.0, 0.0], "module": "PointNavBrake"}
    assert "safe action: the task's `PointNavBrake`" in text
    assert "Accident constraint on held-out states" in text  # the constraint's multiplier, reported


def test_failing_certification_exits_1_and_releases_nothing(artifact, tmp_path, capsys):
    releases = tmp_path / "releases"
    code = main(["certify", str(artifact), "-o", f"deploy.releases_dir={releases}", "-o", "deploy.episodes=3",
                 "-o", "data.workers=1", "-o", "deploy.criteria.safecritic/PointNav-v0.latency_p99_ms=0.001"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "p99 latency" in out and "nothing released" in out
    assert not releases.exists() or not any(releases.iterdir())


def test_smoke_pipeline_end_to_end(tmp_path, minari_root):
    """`safecritic run` on the smoke preset: collect, train, export, evaluate, certify, release."""
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "datasets"))
    out = subprocess.run(
        ["safecritic", "run", "-c", str(SMOKE), "--run-dir", str(tmp_path / "run"),
         "-o", f"deploy.releases_dir={tmp_path / 'releases'}"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "certification: PASSED" in out.stdout
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["passed"] and len(report["engines"]) == 2
    variants = {r["variant"] for r in report["ablations"]}
    assert {"gated (full)", "gate_off", "accident_only", "ood_only", "unconstrained", "bc", "bc_successful"} <= variants
    released = list((tmp_path / "releases").iterdir())
    assert len(released) == 1 and (released[0] / "controller.pt").is_file()
    assert load(released[0]).act(np.zeros(12, np.float32))[0].shape == (2,)
    for png in ("returns_costs.png", "accident_rates.png", "paths_PointNav-v0.png", "decisions_PointNavBullet-v0.png"):
        assert (tmp_path / "run" / "report" / png).is_file(), png


def test_finished_run_accepts_new_gate_and_deploy_settings_not_training_ones(smoke_run):
    """`safecritic run` on a trained run may change what is applied after training, nothing else."""
    from safecritic.configs.errors import RunError
    from safecritic.pipeline import POST_TRAINING_SECTIONS, check_run_dir

    config, _, _ = load_trained(smoke_run)
    later = config.model_copy(update={"gate": config.gate.model_copy(update={"cost_threshold": 0.01}),
                                      "deploy": config.deploy.model_copy(update={"episodes": 7})})
    check_run_dir(smoke_run, later, resume=True, ignore=POST_TRAINING_SECTIONS)
    with pytest.raises(RunError, match="differs"):
        check_run_dir(smoke_run, later, resume=True)  # an unfinished run resumes only with its own config
    retrained = config.model_copy(update={"critics": config.critics.model_copy(update={"gamma": 0.5})})
    with pytest.raises(RunError, match="critics.gamma"):
        check_run_dir(smoke_run, retrained, resume=True, ignore=POST_TRAINING_SECTIONS)


def test_unknown_reference_is_refused_before_any_work(tmp_path, capsys):
    """A typo in return_reference stops `safecritic run` before collecting or training."""
    code = main(["run", "-c", str(SMOKE), "--run-dir", str(tmp_path / "r"),
                 "-o", "deploy.criteria.safecritic/PointNav-v0.return_reference=cautous"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'cautous' is neither a controller variant" in err and "reckless, cautious" in err
    assert not (tmp_path / "r").exists()
