"""controller/training.py on the smoke preset: signs, resume, divergence, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from safecritic.configs import RunError, load_config
from safecritic.controller.model import ModelSpec, SafeCriticModel
from safecritic.controller.training import Trainer, TrainingDiverged, fit_ood_prior_scale, load_checkpoint, load_trained
from safecritic.envs.dataset import load_offline_data
from safecritic.pipeline import check_run_dir, train

from conftest import SMOKE

# A shorter schedule than the smoke preset for the tests that train twice.
TINY = ["train.steps=40", "train.checkpoint_every=15", "train.log_every=5",
        "critics.ood.steps=20", "policy.prior_steps=20"]


@pytest.fixture(scope="session")
def trained_smoke(tmp_path_factory, smoke_dataset):
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    config = load_config(SMOKE)
    summary = train(config, run_dir)
    return run_dir, summary


def test_run_dir_holds_config_metrics_checkpoint_and_summary(trained_smoke):
    run_dir, summary = trained_smoke
    assert (run_dir / "config.yaml").is_file()
    assert load_config(run_dir / "config.yaml") == load_config(SMOKE)
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"pretrain", "critic"} == {l["phase"] for l in lines}
    assert all("updates_per_s" in l for l in lines)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["phase"] == "done"
    assert json.loads((run_dir / "train_summary.json").read_text())["critic_updates_per_s"] > 0
    assert summary["calibration"]["ood_calib_n"] > 0
    assert not list(run_dir.rglob("*.tmp"))  # atomic writes leave no temp files


def test_accident_critic_overestimates_off_the_data(tmp_path, smoke_dataset):
    """DESIGN.md's sign test: after training, mean Q_C on uniform actions >= on dataset actions (both heads).
    Longer than the smoke preset's 400 updates: Q_C starts at the budget on every action alike."""
    config = load_config(SMOKE, ["train.steps=1500", "train.log_every=500", "policy.prior_steps=50",
                                 "critics.ood.steps=50"])
    data = load_offline_data(config.data)
    trainer = Trainer(config, data, tmp_path / "sign")
    trainer.run()
    model = trainer.model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        obs = model.normalize_obs(data.train.obs)
        _, data_logits = model.critic(obs, model.to_unit_action(data.train.act))
        uniform = torch.rand(8, *data.train.act.shape, generator=g) * 2 - 1
        _, uniform_logits = model.critic(obs, uniform)
    for head in range(2):  # both accident critics: under the policy, and of recovery
        q_data = model.critic.cost_value(data_logits[..., head]).mean()
        q_uniform = model.critic.cost_value(uniform_logits[..., head]).mean()
        assert q_uniform >= q_data, head


def test_detector_threshold_is_calibrated(trained_smoke):
    run_dir, summary = trained_smoke
    _, model, _ = load_trained(run_dir)
    assert torch.isfinite(model.ood_tau) and float(model.ood_tau) == pytest.approx(summary["calibration"]["ood_tau"])


def test_ood_prior_scale_is_fitted_on_training_pairs_not_calibration(trained_smoke):
    """The score is fixed before the conformal threshold sees the calibration episodes."""
    run_dir, summary = trained_smoke
    config, model, _ = load_trained(run_dir)
    data = load_offline_data(config.data)
    scale = fit_ood_prior_scale(model, data, config.critics.ood.prior_weight)
    assert scale > 0.0 and float(model.ood_prior_scale) == pytest.approx(scale, rel=1e-6)
    assert summary["calibration"]["ood_prior_scale"] == pytest.approx(scale, rel=1e-6)
    assert fit_ood_prior_scale(model, data, 0.0) == 0.0


def _update_setup(overrides: list[str] = ()):
    """An untrained smoke-config model (12-dim observations, 2-dim actions), a batch of 8 states and
    an Update whose optimisers change nothing: the update's targets and losses as they are."""
    from safecritic.controller.update import Batch, TrainTensors, Update

    config = load_config(SMOKE, ["run.precision=fp32", *overrides])
    model = SafeCriticModel(config, ModelSpec(12, 2, 1.0, (-1.0, -1.0), (1.0, 1.0)))
    g = torch.Generator().manual_seed(0)
    obs, next_obs = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g)
    act = torch.rand(8, 2, generator=g) * 2 - 1
    tensors = TrainTensors(model, obs, act, torch.zeros(8), torch.zeros(8), next_obs, torch.zeros(8))
    tensors.cache_priors(model)
    frozen = {k: torch.optim.SGD(p.parameters(), lr=0.0) for k, p in (("critic", model.critic), ("actor", model.actor))}
    batch = tensors.sample(8, torch.Generator().manual_seed(1))
    return config, model, batch, Update(model, config, frozen, torch.Generator().manual_seed(2))


def test_the_accident_targets_follow_the_policy_and_the_safest_recovery():
    """Q_C under the policy backs up the actor's mode at s'; Q_C of recovery the safest of the
    deterministic candidates at s' (actor components, pi_beta's means, the safe action), each by
    its most pessimistic member; both stop at terminal steps and carry the step's cost."""
    from safecritic.controller.policies import mode_index, pick

    config, model, batch, update = _update_setup()
    policy = update.policy_at(batch)
    targets = update.targets(batch, policy)
    gamma = config.critics.accident.gamma
    with torch.no_grad():
        mode = pick(policy.next.mean, mode_index(*policy.next))
        torch.testing.assert_close(policy.mode_next, mode)
        _, logits = model.critic_target(batch.next_obs, mode)
        expected = gamma * model.critic.cost_value(logits[..., 0]).max(0).values
        torch.testing.assert_close(targets.policy_risk, expected)
        cands = torch.cat([mode.unsqueeze(0), policy.next.mean.transpose(0, 1), batch.prior_next.mean.transpose(0, 1),
                           model.safe_units(batch.raw_next_obs).unsqueeze(0)])
        _, logits = model.critic_target(batch.next_obs, cands)
        safest = model.critic.cost_value(logits[..., 1]).max(0).values  # [K, B]: by the worst member
        torch.testing.assert_close(targets.recovery_risk, gamma * safest.min(0).values)
    batch.terminal[:] = 1.0
    batch.cost[:] = 1.0
    ended = update.targets(batch, policy)
    assert (ended.policy_risk == 1.0).all() and (ended.recovery_risk == 1.0).all()


def test_the_update_runs_its_named_steps_and_reports_the_constraint():
    config, model, batch, update = _update_setup()
    out = update(batch, batch)
    for key in ("q_task_loss", "cql_gap", "policy_risk_loss", "recovery_risk_loss", "actor_loss", "unconstrained_loss",
                "feasible", "kept", "constraint_binds", "constraint_infeasible", "multiplier_where_binding"):
        assert key in out and torch.isfinite(out[key]), key


def test_the_accident_critics_start_at_the_budget():
    """From 0.5 every state looked infeasible for thousands of updates and the actor learned to stand still."""
    config, model, batch, _ = _update_setup()
    with torch.no_grad():
        _, logits = model.critic(batch.obs, batch.act)
    q = model.critic.cost_value(logits)
    assert (q - config.policy.cost_limit).abs().max() < 0.05


def test_critic_phase_reads_the_frozen_priors_parameters_from_a_cache(smoke_dataset):
    """The cache holds pi_beta at each row's state and next state and pi_ref at the state; a batch's
    parameters equal the priors' own."""
    config = load_config(SMOKE)
    trainer = Trainer(config, load_offline_data(config.data), "unused")
    tensors, model = trainer.tensors, trainer.model
    assert tensors.prior_obs is None
    tensors.cache_priors(model, chunk=100)  # chunks that do not divide the rows
    batch = tensors.sample(64, torch.Generator().manual_seed(0), rare_fraction=0.25)
    with torch.no_grad():
        for cached, policy, obs in ((batch.prior, model.prior, batch.obs), (batch.prior_next, model.prior, batch.next_obs),
                                    (batch.reference, model.reference, batch.obs)):
            for got, want in zip(cached, policy.params(obs)):
                torch.testing.assert_close(got, want)


def test_rollout_of_each_policy_and_refusals(trained_smoke, capsys):
    """`rollout --policy` runs any of the run's policies; an unknown env is refused before any rollout."""
    from safecritic.cli import main

    run_dir, _ = trained_smoke
    capsys.readouterr()
    assert main(["rollout", str(run_dir), "--policy", "bc_successful", "-n", "1"]) == 0
    assert main(["rollout", str(run_dir), "--policy", "unconstrained", "-n", "1"]) == 0
    capsys.readouterr()
    assert main(["rollout", str(run_dir), "--env", "NoSuchEnv-v0", "-n", "1"]) == 2  # refused before any rollout
    captured = capsys.readouterr()
    assert "unknown env id 'NoSuchEnv-v0'" in captured.err and "rollout actor" not in captured.err  # no progress bar


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "updates_per_s"} for r in rows]  # timing differs


# The model-based learners hold an imagined buffer, a refresh counter and (MOPO, COMBO) a model beside
# the model's weights: the checkpoint carries them too. Their refreshes (every 10 updates) fall on
# both sides of the kill, and a refresh is due at the lost step 20.
MODEL_BASED = "policy.learner_options={model_steps: 30, branches: 50, refresh_every: 10, horizon: 3}"
ARMOR = "policy.learner_options={model_steps: 30, branches: 50, refresh_every: 10, horizon: 3, model_width: 32}"


@pytest.mark.parametrize("learner", [[], ["policy.learner=mopo", MODEL_BASED], ["policy.learner=combo", MODEL_BASED],
                                     ["policy.learner=armor", ARMOR]], ids=["csc", "mopo", "combo", "armor"])
def test_resume_after_a_kill_ends_identical_to_an_uninterrupted_run(tmp_path, smoke_dataset, learner):
    config = load_config(SMOKE, TINY + learner)
    data = load_offline_data(config.data)
    straight = Trainer(config, data, tmp_path / "a")
    straight.run()

    class Killed(Exception):
        pass

    def kill(phase: str, step: int) -> None:
        if phase == "critic" and step == 22:  # between checkpoints (15, 30): 7 steps are lost
            raise Killed

    with pytest.raises(Killed):
        Trainer(config, data, tmp_path / "b", on_step=kill).run()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 15
    resumed = Trainer(config, data, tmp_path / "b")
    resumed.run(resume=True)
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, smoke_dataset):
    config = load_config(SMOKE, TINY)
    trainer = Trainer(config, load_offline_data(config.data), tmp_path / "nan")
    trainer.tensors.rew[:] = float("nan")  # poison the rewards: the first critic loss is NaN
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        trainer.run()
    state = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert state["phase"] == "critic" and state["step"] == 0  # the checkpoint after pretraining
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_existing_run_needs_resume_and_the_same_config(trained_smoke):
    run_dir, _ = trained_smoke
    with pytest.raises(RunError, match="--resume"):
        check_run_dir(run_dir, load_config(SMOKE), resume=False)
    with pytest.raises(RunError, match="critics.lr"):
        check_run_dir(run_dir, load_config(SMOKE, ["critics.lr=0.1"]), resume=True)
    check_run_dir(run_dir, load_config(SMOKE), resume=True)  # same config: allowed


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path, trained_smoke):
    run_dir, _ = trained_smoke
    blob = (run_dir / "checkpoints" / "last.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RunError, match="unreadable"):
        load_checkpoint(bad)
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(RunError, match="not a safecritic checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(RunError, match="no run"):
        load_trained(tmp_path / "nowhere")


def test_critic_batches_oversample_the_approach_to_accidents(smoke_dataset):
    from safecritic.controller.update import TrainTensors
    from safecritic.critics.diagnostics import steps_before_accident

    config = load_config(SMOKE)
    data = load_offline_data(config.data)
    trainer = Trainer(config, data, "unused")
    rare = trainer.tensors.rare
    expected = torch.nonzero(steps_before_accident(data.train, config.critics.accident.oversample_horizon,
                                                   require_terminal=False)).flatten()
    assert torch.equal(rare, expected) and len(rare) > 0
    assert torch.all(data.train.cost[rare].sum() > 0)
    g = torch.Generator().manual_seed(0)
    batch = trainer.tensors.sample(200, g, rare_fraction=0.25)
    # the last 50 rows come from the rare set: their next states lie within 10 steps of a cost
    rare_obs = trainer.tensors.obs[rare]
    tail = batch.obs[-50:]
    assert all((rare_obs == row).all(dim=1).any() for row in tail)
    plain = TrainTensors(trainer.model, data.train.obs, data.train.act, data.train.rew, data.train.cost,
                         data.train.next_obs, data.train.terminal)
    assert len(plain.sample(64, g, rare_fraction=0.5).obs) == 64  # no rare set: plain uniform batches


def test_summary_reports_the_accident_critics_ranking_and_the_constraint(trained_smoke):
    run_dir, _ = trained_smoke
    calibration = json.loads((run_dir / "train_summary.json").read_text())["calibration"]
    assert 0.0 <= calibration["accident_auroc"] <= 1.0
    assert calibration["accident_positives"] > 0
    constraint = calibration["constraint"]
    for key in ("constraint_binds", "constraint_infeasible", "multiplier_where_binding", "violation_where_feasible"):
        assert 0.0 <= constraint[key] < float("inf"), key
    assert constraint["kl_to_prior"] > -1.0  # a sampled KL estimate: near or above 0
