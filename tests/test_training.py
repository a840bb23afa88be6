"""controller/training.py on the smoke preset: signs, resume, divergence, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from safecritic.configs import RunError, load_config
from safecritic.controller.model import ModelSpec, SafeCriticModel
from safecritic.controller.training import Trainer, TrainingDiverged, fit_ood_prior_scale, load_checkpoint, load_trained
from safecritic.critics.cpu import autocast, use_bf16
from safecritic.envs.dataset import load_offline_data
from safecritic.pipeline import check_run_dir, train

from conftest import SMOKE

# A shorter schedule than the smoke preset for the tests that train twice.
TINY = ["train.steps=40", "train.checkpoint_every=15", "train.log_every=5",
        "critics.ood.steps=20", "policy.prior.steps=20"]


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


def test_accident_critic_overestimates_off_the_data(trained_smoke):
    """DESIGN.md's sign test: after training, mean Q_C on uniform actions >= on dataset actions."""
    run_dir, _ = trained_smoke
    config, model, _ = load_trained(run_dir)
    data = load_offline_data(config.data)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        obs = model.normalize_obs(data.train.obs)
        _, data_logits = model.critic(obs, model.to_unit_action(data.train.act))
        uniform = torch.rand(8, *data.train.act.shape, generator=g) * 2 - 1
        _, uniform_logits = model.critic(obs, uniform)
    q_data = model.critic.cost_value(data_logits).mean()
    q_uniform = model.critic.cost_value(uniform_logits).mean()
    assert q_uniform >= q_data


def test_detector_threshold_is_calibrated(trained_smoke):
    run_dir, summary = trained_smoke
    _, model, _ = load_trained(run_dir)
    assert torch.isfinite(model.ood_tau) and float(model.ood_tau) == pytest.approx(summary["calibration"]["ood_tau"])


def test_runs_from_before_the_prior_term_load_with_the_contrastive_score(trained_smoke):
    """A checkpoint without ood_prior_scale had tau calibrated on the contrastive score alone: scale 0 keeps it so."""
    run_dir, _ = trained_smoke
    config, model, state = load_trained(run_dir)
    old = {k: v for k, v in state["model"].items() if k != "ood_prior_scale"}
    fresh = SafeCriticModel(config, ModelSpec.from_dict(state["spec"]))
    fresh.load_state_dict(old)
    assert float(fresh.ood_prior_scale) == 0.0
    obs = model.normalize_obs(load_offline_data(config.data).test.obs[:64])
    act = torch.zeros(64, model.spec.act_dim)
    with torch.no_grad():
        torch.testing.assert_close(fresh.ood_score(obs, act), fresh.detector.score(obs, act))


def test_ood_prior_scale_is_fitted_on_training_pairs_not_calibration(trained_smoke):
    """The score is fixed before the conformal threshold sees the calibration episodes."""
    run_dir, summary = trained_smoke
    config, model, _ = load_trained(run_dir)
    data = load_offline_data(config.data)
    scale = fit_ood_prior_scale(model, data, config.critics.ood.prior_weight)
    assert scale > 0.0 and float(model.ood_prior_scale) == pytest.approx(scale, rel=1e-6)
    assert summary["calibration"]["ood_prior_scale"] == pytest.approx(scale, rel=1e-6)
    assert fit_ood_prior_scale(model, data, 0.0) == 0.0


def _critic_step_setup(overrides: list[str]):
    """An untrained smoke-config model (12-dim observations, 2-dim actions), 8 normalised
    states and an optimiser that changes nothing: critic_step's targets and losses as they are."""
    config = load_config(SMOKE, overrides)
    model = SafeCriticModel(config, ModelSpec(12, 2, 1.0, (-1.0, -1.0), (1.0, 1.0)))
    x = model.normalize_obs(torch.randn(8, 12, generator=torch.Generator().manual_seed(0)))
    return config, model, x, torch.optim.SGD(model.critic.parameters(), lr=0.0)


def test_task_critic_can_ignore_the_oversampled_rows():
    """critics.task.uniform_rows_only: Q_R's loss does not see the accident approaches drawn for Q_C."""
    from safecritic.controller.updates import Batch, critic_step

    losses = {}
    for only in (False, True):
        config, model, x, opt = _critic_step_setup([f"critics.task.uniform_rows_only={str(only).lower()}"])
        act = torch.rand(8, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
        for rew_rare in (0.0, 50.0):
            rew = torch.zeros(8)
            rew[6:] = rew_rare  # rows 6, 7: the oversampled ones
            batch = Batch(x, act, rew, torch.zeros(8), x.flip(0), torch.zeros(8), uniform_rows=6)
            out = critic_step(model, batch, opt, config, torch.Generator().manual_seed(1))
            losses[(only, rew_rare)] = float(out["q_task_loss"])
    assert losses[(True, 0.0)] == losses[(True, 50.0)]
    assert losses[(False, 0.0)] != losses[(False, 50.0)]


def test_mean_action_backup_does_not_depend_on_the_sample():
    """critics.task.backup_action=mean (d3rlpy's default): Q_R's target uses tanh(mu(s')), no random a'."""
    from safecritic.controller.updates import Batch, critic_step

    targets = {}
    for action in ("sample", "mean"):
        config, model, x, opt = _critic_step_setup([f"critics.task.backup_action={action}"])
        batch = Batch(x, torch.zeros(8, 2), torch.zeros(8), torch.zeros(8), x.flip(0), torch.zeros(8))
        targets[action] = [float(critic_step(model, batch, opt, config, torch.Generator().manual_seed(s))["q_task_target"])
                           for s in (1, 2)]
    assert targets["mean"][0] == targets["mean"][1]
    assert targets["sample"][0] != targets["sample"][1]


def test_reference_backup_values_pi_refs_mode():
    """critics.task.backup_action=reference (one-step RL): y = r + gamma min_e Q_target(s', mode of pi_ref(s'))."""
    from safecritic.controller.updates import Batch, critic_step

    config, model, x, opt = _critic_step_setup(["critics.task.backup_action=reference", "run.precision=fp32"])
    assert model.reference_prior is not None
    batch = Batch(x, torch.zeros(8, 2), torch.zeros(8), torch.zeros(8), x.flip(0), torch.zeros(8))
    targets = [float(critic_step(model, batch, opt, config, torch.Generator().manual_seed(s))["q_task_target"]) for s in (1, 2)]
    with torch.no_grad():
        q, _ = model.critic_target(x.flip(0), model.reference_prior.mode(x.flip(0)).unsqueeze(0))
    assert targets[0] == targets[1] == pytest.approx(float(config.critics.gamma * q[:, 0].min(dim=0).values.mean()), rel=1e-5)
    with torch.no_grad():  # pi_beta's mode is a different action: the target names pi_ref, not any prior
        q_beta, _ = model.critic_target(x.flip(0), model.prior.mode(x.flip(0)).unsqueeze(0))
    assert abs(float(config.critics.gamma * q_beta[:, 0].min(dim=0).values.mean()) - targets[0]) > 1e-6


def test_mc_lower_bound_lifts_the_target_to_the_datas_return():
    """critics.task.mc_lower_bound: y = max(r + gamma V(s'), G) with G the data's return-to-go."""
    from safecritic.controller.updates import Batch, critic_step

    config, model, x, opt = _critic_step_setup(["critics.task.mc_lower_bound=true"])
    g = torch.Generator().manual_seed(1)
    mc = torch.tensor([100.0] * 4 + [-100.0] * 4)
    batch = Batch(x, torch.zeros(8, 2), torch.zeros(8), torch.zeros(8), x.flip(0), torch.ones(8), mc_return=mc)
    # terminal rows: the TD target is r = 0, so the bound decides rows 0-3 and leaves rows 4-7 at 0
    assert float(critic_step(model, batch, opt, config, g)["q_task_target"]) == pytest.approx(50.0)
    batch.mc_return = None
    with pytest.raises(ValueError, match="return-to-go"):
        critic_step(model, batch, opt, config, g)


def test_gated_value_is_the_best_admissible_q_r_else_the_safest_candidates():
    from safecritic.controller.updates import gated_value

    # [E=2, K=3, B=2]; column 0: candidates 0 and 2 admissible, 2 has the best Q_R;
    # column 1: nothing admissible, candidate 1 has the lowest Q_C.
    q_r = torch.tensor([[[1.0, 5.0], [9.0, 2.0], [4.0, 7.0]], [[2.0, 6.0], [8.0, 1.0], [3.0, 8.0]]])
    q_c = torch.tensor([[[0.01, 0.5], [0.2, 0.1], [0.03, 0.3]], [[0.02, 0.6], [0.01, 0.2], [0.04, 0.4]]])
    # by members: Q_R's minimum (pessimistic about return), Q_C's maximum (about risk)
    assert gated_value(q_r, q_c, 0.05).tolist() == [[3.0, 1.0]]
    assert gated_value(q_r, q_c, 1.0).tolist() == [[8.0, 7.0]]


def test_gated_backup_targets_the_accident_backups_candidates():
    """critics.task.gated_backup: y = r + gamma * gated_value over the safest backup's candidates at s'."""
    from safecritic.controller.updates import Batch, critic_step, gated_value

    fp32 = ["run.precision=fp32"]  # exact comparison; zero rewards: the target is gamma * V(s') alone
    config, model, x, opt = _critic_step_setup(["critics.task.gated_backup=true", *fp32])
    batch = Batch(x, torch.zeros(8, 2), torch.zeros(8), torch.zeros(8), x.flip(0), torch.zeros(8))
    target = float(critic_step(model, batch, opt, config, torch.Generator().manual_seed(1))["q_task_target"])
    g = torch.Generator().manual_seed(1)  # critic_step's draws, in its order (lr 0: it changed nothing)
    with torch.no_grad():
        mean, log_std = model.actor(torch.cat([x, x.flip(0)]))
        model.actor.sample_from(mean[:8], log_std[:8], config.critics.sampled_actions, g)
        sample = model.actor.sample_from(mean[8:], log_std[8:], config.critics.sampled_actions, g)[0][:1]
        cands = torch.cat([sample, torch.tanh(mean[8:]).unsqueeze(0), model.prior.candidates(x.flip(0)).transpose(0, 1),
                           model.safe_action_unit.expand(1, 8, 2)])
        q, cost = model.critic_target(x.flip(0), cands)
        v = gated_value(q, model.critic.cost_value(cost), config.critics.task.gated_backup_cost_limit)
    assert target == pytest.approx(float((config.critics.gamma * v).mean()), rel=1e-5)
    plain_config, plain_model, _, plain_opt = _critic_step_setup(fp32)
    plain_model.load_state_dict(model.state_dict())
    plain = float(critic_step(plain_model, batch, plain_opt, plain_config, torch.Generator().manual_seed(1))["q_task_target"])
    assert abs(plain - target) > 1e-3 * abs(target)  # the two targets differ by more than the tolerance


def test_n_step_target_bootstraps_after_n_rewards():
    """critics.task.n_step: y = R_n + gamma^n (1 - terminal_n) min Q_target(s_{t+n}, a')."""
    from safecritic.controller.updates import Batch, critic_step
    from safecritic.envs.dataset import NStep

    config, model, x, opt = _critic_step_setup(["critics.task.n_step=3", "critics.task.backup_action=mean"])
    rew_n = torch.arange(8.0)
    batch = Batch(x, torch.zeros(8, 2), torch.zeros(8), torch.zeros(8), x.flip(0), torch.zeros(8),
                  n_step=NStep(rew_n, x, torch.ones(8), torch.full((8,), 0.9**3)))
    g = torch.Generator().manual_seed(1)
    # every n-step backup ends at a terminal step: the target is the n-step reward alone
    assert float(critic_step(model, batch, opt, config, g)["q_task_target"]) == pytest.approx(3.5)
    batch.n_step = NStep(rew_n, x, torch.zeros(8), torch.full((8,), 0.9**3))
    with torch.no_grad():
        q, _ = model.critic_target(x, torch.tanh(model.actor(x)[0]).unsqueeze(0))
    expected = (rew_n + 0.9**3 * q[:, 0].min(dim=0).values).mean()
    assert float(critic_step(model, batch, opt, config, g)["q_task_target"]) == pytest.approx(float(expected), rel=1e-2)
    batch.n_step = None
    with pytest.raises(ValueError, match="n-step"):
        critic_step(model, batch, opt, config, g)


def test_trainer_draws_the_return_to_go_and_n_step_backups(smoke_dataset):
    from safecritic.envs.dataset import discounted_returns, n_step_backups

    config = load_config(SMOKE, ["critics.task.mc_lower_bound=true"])
    data = load_offline_data(config.data)
    tensors = Trainer(config, data, "unused").tensors
    expected = discounted_returns(data.train, config.critics.gamma)
    assert torch.equal(tensors.mc_return, expected)
    g = torch.Generator().manual_seed(0)
    batch = tensors.sample(64, g, rare_fraction=0.25)
    rows = [int(torch.nonzero((tensors.obs == o).all(dim=1) & (tensors.act == a).all(dim=1))[0])
            for o, a in zip(batch.obs, batch.act)]
    assert torch.equal(batch.mc_return, expected[rows])
    assert Trainer(load_config(SMOKE), data, "unused").tensors.mc_return is None
    n_step = Trainer(load_config(SMOKE, ["critics.task.n_step=5"]), data, "unused").tensors.n_step
    assert torch.equal(n_step.rew, n_step_backups(data.train, 5, config.critics.gamma).rew)


def test_critic_phase_reads_the_frozen_priors_parameters_from_a_cache(smoke_dataset):
    """The cache holds pi_beta's parameters at each row's state and next state; a batch's
    KL density and backup candidates from it equal the prior's own (the uncached path)."""
    from safecritic.controller.updates import Batch

    config = load_config(SMOKE)
    trainer = Trainer(config, load_offline_data(config.data), "unused")
    tensors, prior = trainer.tensors, trainer.model.prior
    assert tensors.prior_obs is None
    tensors.cache_prior(prior, bf16=False, chunk=100)  # chunks that do not divide the rows
    batch = tensors.sample(64, torch.Generator().manual_seed(0), rare_fraction=0.25)
    assert batch.prior is not None and batch.prior_next is not None
    act = torch.rand(64, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    uncached = Batch(batch.obs, batch.act, batch.rew, batch.cost, batch.next_obs, batch.terminal)
    with torch.no_grad():
        torch.testing.assert_close(batch.prior_log_prob(prior, act), prior.log_prob(batch.obs, act))
        torch.testing.assert_close(uncached.prior_log_prob(prior, act), prior.log_prob(batch.obs, act))
        torch.testing.assert_close(batch.prior_next_candidates(prior), prior.candidates(batch.next_obs))
        torch.testing.assert_close(uncached.prior_next_candidates(prior), prior.candidates(batch.next_obs))
    trainer.update_step()  # the critic phase fills the cache itself
    assert tensors.prior_obs.log_w.shape == (len(tensors), config.policy.prior.components)


def test_kl_prior_successful_regularises_the_actor_towards_pi_ref(smoke_dataset):
    """policy.constraints.kl_prior=successful: the KL term reads pi_ref at the states, while
    the critics' backup candidates at the next states stay pi_beta's."""
    config = load_config(SMOKE, ["policy.constraints.kl_prior=successful"])
    trainer = Trainer(config, load_offline_data(config.data), "unused")
    model, tensors = trainer.model, trainer.tensors
    assert model.kl_prior is model.reference_prior
    trainer.update_step()  # fills the cache
    batch = tensors.sample(64, torch.Generator().manual_seed(0))
    act = torch.rand(64, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(batch.prior_log_prob(model.kl_prior, act), model.reference_prior.log_prob(batch.obs, act))
        assert not torch.allclose(batch.prior_log_prob(model.kl_prior, act), model.prior.log_prob(batch.obs, act))
        with autocast(use_bf16(config.run.precision)):  # the next states' cache is computed as the backup used it
            expected = model.prior.candidates(batch.next_obs)
        torch.testing.assert_close(batch.prior_next_candidates(model.prior), expected)
    assert load_config(SMOKE).policy.constraints.kl_prior == "behaviour"


def test_fitting_pi_ref_leaves_the_other_networks_training_unchanged(tmp_path, smoke_dataset):
    """pi_ref is built last and draws its batches from its own generator: with or without it,
    pi_beta, the detector, the critics and the actors end the same bits."""
    states = []
    for extra in ([], ["policy.prior.fit_successful=false", "gate.reference=behaviour"]):
        config = load_config(SMOKE, ["train.steps=20", *extra])
        trainer = Trainer(config, load_offline_data(config.data), tmp_path / str(len(extra)))
        trainer.run()
        states.append({k: v for k, v in trainer.model.state_dict().items() if not k.startswith("reference_prior.")})
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_rollout_of_a_policy_the_run_did_not_train_is_refused_clearly(trained_smoke, capsys):
    """`rollout --policy plain|bc_successful` on a run without that network: a RunError naming the setting
    (the CLI prints it as one line), while a run that has pi_ref rolls bc_successful out."""
    from safecritic.cli import main
    from safecritic.controller.run_policies import numpy_policy

    run_dir, _ = trained_smoke
    _, model, _ = load_trained(run_dir)
    bare_config = load_config(SMOKE, ["policy.plain_actor=false", "policy.prior.fit_successful=false",
                                      "gate.reference=behaviour"])
    bare = SafeCriticModel(bare_config, model.spec)
    for which, setting in (("plain", "policy.plain_actor"), ("bc_successful", "policy.prior.fit_successful")):
        with pytest.raises(RunError, match=setting):
            numpy_policy(bare, which)
    capsys.readouterr()
    assert main(["rollout", str(run_dir), "--policy", "bc_successful", "-n", "1"]) == 0  # the smoke run has pi_ref
    capsys.readouterr()
    assert main(["rollout", str(run_dir), "--env", "NoSuchEnv-v0", "-n", "1"]) == 2  # refused before any rollout
    captured = capsys.readouterr()
    assert "unknown env id 'NoSuchEnv-v0'" in captured.err and "rollout actor" not in captured.err  # no progress bar


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _metrics(run_dir) -> list[dict]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "updates_per_s"} for r in rows]  # timing differs


def test_resume_after_a_kill_ends_identical_to_an_uninterrupted_run(tmp_path, smoke_dataset):
    config = load_config(SMOKE, TINY)
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
    from safecritic.controller.updates import TrainTensors
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
    # the cost dual measures E_D[Q_C] on the uniformly drawn rows only
    assert batch.uniform_rows == 150


def test_summary_reports_the_accident_critics_ranking(trained_smoke):
    run_dir, _ = trained_smoke
    calibration = json.loads((run_dir / "train_summary.json").read_text())["calibration"]
    assert 0.0 <= calibration["accident_auroc"] <= 1.0
    assert calibration["accident_positives"] > 0


def test_pi_refs_batches_blur_only_the_named_raw_entries(smoke_dataset):
    """policy.prior.reference_noise_entries: the raw velocity gets noise of the configured std before the
    features are derived; position, goal and hazard columns are the data's; without entries, the plain batch."""
    from safecritic.controller.updates import blurred_batch

    config = load_config(SMOKE, ["policy.prior.reference_noise_std=0.2"])
    trainer = Trainer(config, load_offline_data(config.data), "unused")
    model, tensors, raw = trainer.model, trainer.tensors, trainer.data.train.obs
    idx = tensors.draw(4096, torch.Generator().manual_seed(0))
    batch = blurred_batch(model, raw, tensors.act, idx, [2, 3], 0.2, torch.Generator().manual_seed(1))
    clean = tensors.obs[idx]
    raw_cols = raw.shape[1]
    untouched = [c for c in range(raw_cols) if c not in (2, 3)]
    torch.testing.assert_close(batch.obs[:, untouched], clean[:, untouched])
    torch.testing.assert_close(batch.act, tensors.act[idx])
    noise = (batch.obs[:, [2, 3]] - clean[:, [2, 3]]) * model.obs_norm.std[[2, 3]]
    assert abs(float(noise.std()) - 0.2) < 0.02 and abs(float(noise.mean())) < 0.02
    assert not torch.equal(batch.obs[:, raw_cols:], clean[:, raw_cols:])  # PointNav's approach speeds read the velocity
    off = Trainer(load_config(SMOKE, ["policy.prior.reference_noise_entries=null"]), trainer.data, "unused")
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    off.reference_generator = g1
    torch.testing.assert_close(off._reference_batch(64).obs, off.tensors.sample(64, g2, rows=off.successful_rows).obs)


def test_reference_noise_entries_outside_the_observation_are_refused(smoke_dataset):
    from safecritic.configs import ConfigError

    config = load_config(SMOKE, ["policy.prior.reference_noise_entries=[2, 12]"])
    with pytest.raises(ConfigError, match=r"reference_noise_entries \[12\].*\[2, 3\]"):
        Trainer(config, load_offline_data(config.data), "unused")
