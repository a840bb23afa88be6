"""The learners behind policy.learner (controller/learners/): each trains, exports behind the
gate and alone, and shows the behaviour that defines it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SMOKE

STEPS = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_dataset):
    """name -> (run folder, config, model), each smoke run trained once for the module."""
    from safecritic.configs import load_config
    from safecritic.controller.training import load_trained
    from safecritic.pipeline import train

    root = tmp_path_factory.mktemp("learners")
    runs = {}

    def get(name: str, *overrides: str):
        key = (name, *overrides)
        if key not in runs:
            config = load_config(SMOKE, [f"policy.learner={name}", f"train.steps={STEPS}", "run.precision=fp32", *overrides])
            run_dir = Path(tempfile.mkdtemp(dir=root)) / "run"
            train(config, run_dir)
            runs[key] = (run_dir, *load_trained(run_dir)[:2])
        return runs[key]

    return get


def _states(config, n: int = 512) -> torch.Tensor:
    from safecritic.envs.dataset import load_offline_data

    return load_offline_data(config.data).test.obs[:n]


SMALL_MODEL = "policy.learner_options={model_steps: 150, branches: 200, refresh_every: 100}"


@pytest.mark.parametrize("name", ["bc", "bc_safe", "bcq", "bcq_lag", "bear", "bear_lag", "brac", "mopo", "combo",
                                  "cpq", "coptidice"])  # armor's: tests/test_armor.py
def test_each_learner_exports_gated_and_alone_and_acts(trained, name, observations):
    from safecritic.deploy.export import ablations_for
    from safecritic.deploy.runtime import load
    from safecritic.pipeline import export

    run_dir, config, _ = trained(name, *([SMALL_MODEL] if name in ("mopo", "combo") else []))
    assert "unconstrained" not in {v.name for v in ablations_for(config)}  # no twin is trained
    for variant in ("gated", "gate_off"):
        folder = Path(run_dir) / variant
        export(run_dir, folder, variant)  # export itself checks TorchScript parity
        controller = load(folder)
        actions, records = controller.act(observations[:64].numpy())
        assert np.isfinite(actions).all() and (records[:, 0] != 3).all()  # no faults on data states
        action, record = controller.act(np.full(observations.shape[1], np.nan, dtype=np.float32))
        assert np.isfinite(action).all() and record[0] == 3  # a fault: the safe action


def test_bcq_acts_within_phi_of_its_generative_models_samples_and_the_perturbation_raises_q(trained):
    from safecritic.controller.learners.bcq import largest_move

    for phi in (0.05, 0.3):
        _, config, model = trained("bcq", f"policy.learner_options={{phi: {phi}}}")
        x = model.normalize_obs(_states(config))
        assert 0.0 < largest_move(model.actor, x) <= phi + 1e-6
    with torch.no_grad():
        raw = model.actor.candidates(x)
        moved = model.actor.perturb(x, raw)
        q_raw = model.critic(x, raw)[0].min(0).values.max(0).values
        q_moved = model.critic(x, moved)[0].min(0).values.max(0).values
    assert q_moved.mean() > q_raw.mean()


def _policy_risk(model, config) -> float:
    """Mean over held-out states of the most pessimistic member's Q_C(s, pi(s))."""
    with torch.no_grad():
        x = model.normalize_obs(_states(config))
        _, logits = model.critic(x, model.actor.mode(x))
        return float(torch.sigmoid(logits[..., 0].max(dim=0).values).mean())


@pytest.mark.parametrize("lagrangian, plain", [("bcq_lag", "bcq"), ("bear_lag", "bear")])
def test_the_lagrangian_learners_price_the_accident_risk_until_their_budget_binds(trained, lagrangian, plain):
    """With a budget below what the plain learner's policy incurs, lambda rises and the -Lag learner
    picks less risky actions than the plain one."""
    import json

    # gains that bind within the smoke budget's few hundred updates (the defaults take thousands)
    run_dir, config, lag = trained(lagrangian, "policy.cost_limit=0.0", "policy.learner_options={kp: 10.0, ki: 100.0}")
    _, _, plain = trained(plain, "policy.cost_limit=0.0")
    lines = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    multipliers = [line["cost_multiplier"] for line in lines if "cost_multiplier" in line]
    assert multipliers[-1] > multipliers[0] > 0.0  # always over a zero budget: lambda only rises
    assert _policy_risk(lag, config) < _policy_risk(plain, config)


def test_the_pid_multiplier_follows_the_violations_integral():
    """OSRL's PID Lagrangian: a constant violation raises lambda linearly (not geometrically, as
    log-space ascent does), a met budget lets the integral drain back to zero."""
    from torch import nn

    from safecritic.controller.learners import dual

    actor, gains = dual.attach_pid(nn.Module()), dual.PIDGains(kp=0.0, ki=0.5, kd=0.0)
    rising = [float(dual.pid_step(actor, torch.tensor(0.2), gains)) for _ in range(10)]
    assert rising == pytest.approx([0.1 * (k + 1) for k in range(10)])
    falling = [float(dual.pid_step(actor, torch.tensor(-0.5), gains)) for _ in range(5)]
    assert falling[0] == pytest.approx(0.75) and falling[-1] == 0.0
    both = dual.PIDGains(kp=2.0, ki=0.0, kd=1.0)
    dual.pid_step(actor, torch.tensor(0.1), both)
    assert float(dual.pid_step(actor, torch.tensor(0.3), both)) == pytest.approx(2.0 * 0.3 + 1.0 * 0.2)
    assert float(actor.cost_multiplier) == pytest.approx(0.8)  # a buffer: checkpoints carry it


def test_bc_safe_learns_from_the_safe_episodes_only(trained):
    """BC-Safe's policy explains the safe episodes' actions better, and the costly ones' worse, than BC's."""
    from safecritic.envs.dataset import episode_sums, load_offline_data

    _, config, safe = trained("bc_safe")
    _, _, bc = trained("bc")
    test = load_offline_data(config.data).train  # the smoke test split holds no costly episode
    cost, inverse = episode_sums(test, test.cost)
    costly = (cost > config.data.successful_max_cost)[inverse]
    assert costly.any() and (~costly).any()
    with torch.no_grad():
        def nll(model, rows):
            return float(-model.actor.log_prob(model.normalize_obs(test.obs[rows]), model.to_unit_action(test.act[rows])).mean())
        assert nll(safe, costly) - nll(safe, ~costly) > nll(bc, costly) - nll(bc, ~costly)


def _mmd_to_prior(model, config) -> float:
    from safecritic.controller.learners.bear import mmd
    from safecritic.controller.policies import MixturePolicy

    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        x = model.normalize_obs(_states(config))
        a, _ = MixturePolicy.sample(model.actor.params(x), 64, g)
        b, _ = MixturePolicy.sample(model.prior.params(x), 64, g)
        return float(mmd(a, b, 0.2).mean())


def test_bear_keeps_its_mmd_under_the_budget_and_a_loose_budget_lets_it_drift(trained):
    _, config, bound = trained("bear", "policy.learner_options={epsilon: 0.05, multiplier_lr: 0.05}")
    _, _, loose = trained("bear", "policy.learner_options={epsilon: 10.0, multiplier_lr: 0.05}")
    held, drifted = _mmd_to_prior(bound, config), _mmd_to_prior(loose, config)
    assert held <= 0.05 * 1.2, held
    assert drifted > held


def test_bear_multiplier_rises_over_the_budget_and_falls_under_it(smoke_config):
    from safecritic.configs import load_config
    from safecritic.controller.learners.bear import BEAR
    from safecritic.controller.model import ModelSpec, SafeCriticModel

    config = load_config(SMOKE, ["policy.learner=bear", "policy.learner_options={multiplier_lr: 0.1}"])
    model = SafeCriticModel(config, ModelSpec(12, 2, 1.0, (-1.0, -1.0), (1.0, 1.0)), learner=BEAR)
    update = BEAR(model, config, BEAR.optimizers(model, config), torch.Generator().manual_seed(0))
    over = [float(update.multiplier_step(torch.tensor([0.5]))["mmd_multiplier"]) for _ in range(20)]
    assert over[0] > 1.0 and over[-1] > over[0]  # over the budget of 0.05: alpha rises
    under = [float(update.multiplier_step(torch.tensor([0.0]))["mmd_multiplier"]) for _ in range(40)]
    assert under[-1] < over[-1]  # under it (once Adam's momentum turns): alpha falls


def test_brac_a_higher_price_keeps_the_actor_closer_to_the_behaviour(trained):
    from safecritic.controller.training import kl_to_prior

    _, config, cheap = trained("brac", "policy.learner_options={alpha: 0.01}")
    _, _, dear = trained("brac", "policy.learner_options={alpha: 3.0}")
    with torch.no_grad():
        x = _states(config)
        kl_cheap, kl_dear = kl_to_prior(cheap, cheap.normalize_obs(x)), kl_to_prior(dear, dear.normalize_obs(x))
    assert kl_dear < kl_cheap


def test_a_learner_option_it_does_not_have_is_refused_by_name(tmp_path, smoke_dataset):
    from safecritic.configs import load_config
    from safecritic.configs.errors import ConfigError, SafecriticError
    from safecritic.pipeline import train

    config = load_config(SMOKE, ["policy.learner=bcq", "policy.learner_options={epsilon: 0.1}"])
    with pytest.raises(ConfigError, match="epsilon.*not a setting of the 'bcq' learner.*phi"):
        train(config, tmp_path / "run")
    with pytest.raises(SafecriticError, match="learner"):
        load_config(SMOKE, ["policy.learner=cql_plus"])


def _model_based(name: str, trained, **options):
    """A trained model-based run's model, and a fresh update of it with the training split."""
    _, config, model = trained(name, SMALL_MODEL)
    return _model_based_of(model, config, name, **options)


def _model_based_of(model, config, name: str, **options):
    config = config.model_copy(update={"policy": config.policy.model_copy(update={"learner_options": {
        "model_steps": 150, "branches": 200, **options}})})
    tensors = _train_tensors(model, config)
    return model, _update_of(name, model, config, data=tensors), tensors


def test_mopo_pays_for_the_models_disagreement_in_its_imagined_rewards(trained):
    model, update, _ = _model_based("mopo", trained, penalty=0.0)
    update.refresh()
    free = update.imagined
    priced = update.settings.__class__(**{**update.settings.__dict__, "penalty": 5.0})
    update.settings, update.imagined, update.g = priced, None, torch.Generator().manual_seed(3)
    update.refresh()  # the same dynamics, the same draws: only the penalty differs
    u = update.dynamics.disagreement(update.imagined.raw_obs, model.from_unit_action(update.imagined.act))
    assert (u > 0).all()
    torch.testing.assert_close(update.imagined.rew, free.rew - 5.0 * u, atol=1e-4, rtol=1e-4)


def test_combo_holds_q_lower_on_model_states_than_on_the_data(trained):
    """Q_R at imagined states (the actor's actions) against Q_R at the data's (s, a): COMBO's push-down
    puts the first below the second, and further below than the same learner without it."""
    from safecritic.controller.policies import MixturePolicy

    def gap(name: str, weight: float) -> float:
        opts = f"model_steps: 150, branches: 200, refresh_every: 100, penalty: 0.0, combo_weight: {weight}"
        _, config, model = trained(name, f"policy.learner_options={{{opts}}}")
        _, update, real = _model_based_of(model, config, name)
        update.refresh()
        with torch.no_grad():
            x = update.imagined.obs
            acts, _ = MixturePolicy.sample(model.actor.params(x), 8, torch.Generator().manual_seed(0))
            q_model = model.critic(x, acts)[0].min(0).values.mean()  # s ~ the model, a ~ pi
            q_data = model.critic(real.obs, real.act)[0].min(0).values.mean()
        return float(q_data - q_model)

    combo, without = gap("combo", 5.0), gap("combo", 0.0)
    assert combo > 0.0, combo
    assert combo > without, (combo, without)


def _update_of(name: str, model, config, data=None):
    from safecritic.controller.learners import learner_class

    cls = learner_class(name)
    return cls(model, config, cls.optimizers(model, config), torch.Generator().manual_seed(3), data=data)


def _train_tensors(model, config):
    from safecritic.controller.update import TrainTensors
    from safecritic.envs.dataset import load_offline_data

    train = load_offline_data(config.data).train
    tensors = TrainTensors(model, train.obs, train.act, train.rew, train.cost, train.next_obs, train.terminal)
    tensors.cache_priors(model)
    return tensors


def test_cpq_values_nothing_past_an_unsafe_next_action(trained):
    """CPQ's Q_R backup keeps r + gamma min Q_R' where a' ~ pi(s') is within the budget and only r
    where it is not; on the data, the cut falls more often in the episodes that end in an accident."""
    from safecritic.critics.cql import task_target
    from safecritic.envs.dataset import episode_sums, load_offline_data

    _, config, model = trained("cpq")
    data = _train_tensors(model, config)
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:4096]
    batch = data.rows(rows)

    def backup_at(limit: float | None) -> dict:
        """The backup's inputs and output over the whole training split, at budget `limit`."""
        cfg = config if limit is None else config.model_copy(
            update={"policy": config.policy.model_copy(update={"cost_limit": limit})})
        update, seen = _update_of("cpq", model, cfg), {}
        backup = update.task_backup

        def spy(b, q_next, risk_next):
            seen.update(q_next=q_next, risk=risk_next.max(dim=0).values, out=backup(b, q_next, risk_next))
            return seen["out"]

        update.task_backup = spy
        update.targets(batch, update.policy_at(batch))
        return seen

    # a budget inside the range of this briefly trained critic's Q_C, so that both sides occur
    limit = float(backup_at(None)["risk"].median())
    seen = backup_at(limit)
    cut = seen["risk"] > limit
    assert 0.3 < cut.float().mean() < 0.7
    torch.testing.assert_close(seen["out"][cut], batch.rew[cut])
    plain = task_target(batch.rew, batch.terminal, seen["q_next"], config.critics.gamma)
    torch.testing.assert_close(seen["out"][~cut], plain[~cut])
    train = load_offline_data(config.data).train
    episode_cost, inverse = episode_sums(train, train.cost)
    costly = (episode_cost > 0)[inverse][rows]  # the rows of the episodes that end in an accident
    assert cut[costly].float().mean() > cut[~costly].float().mean()


def test_coptidice_ratio_is_the_maximiser_of_its_conjugate():
    """w = (f')^-1(y) maximises w y - f(w) for the soft chi^2 f, and f*(y) is that maximum."""
    from safecritic.controller.learners.coptidice import conjugate, ratio

    w = torch.linspace(1e-4, 12.0, 200001, dtype=torch.float64)
    f = torch.where(w < 1, w * torch.log(w) - w + 1, 0.5 * (w - 1) ** 2)
    for y in (-3.0, -0.5, 0.0, 0.7, 4.0):
        objective = w * y - f  # flat at its top: the argmax is good to ~sqrt(float64 eps) in w
        best = objective.argmax()
        assert abs(float(ratio(torch.tensor(y, dtype=torch.float64))) - float(w[best])) < 1e-3
        assert abs(float(conjugate(torch.tensor(y, dtype=torch.float64))) - float(objective[best])) < 1e-8


def test_coptidice_weights_costly_transitions_down_as_its_budget_binds(trained):
    """Over a zero budget lambda only rises; the learned ratio then gives the transitions with a cost
    less weight than the cost-free ones, and a larger lambda less still."""
    import json

    from safecritic.controller.learners import dual
    from safecritic.controller.learners.coptidice import ratio

    run_dir, config, model = trained("coptidice", "policy.cost_limit=0.0")
    lines = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    lam = [line["cost_multiplier"] for line in lines if "cost_multiplier" in line]
    assert lam[-1] > lam[0] > 1.0
    update = _update_of("coptidice", model, config)
    data = _train_tensors(model, config)
    batch = data.rows(torch.arange(len(data)))
    costly = batch.cost > 0
    assert costly.any()
    with torch.no_grad():
        w = ratio(update.advantage(batch)[0] / update.settings.alpha)
        assert w[costly].mean() < w[~costly].mean()
        model.actor.log_multiplier.add_(1.0)  # lambda times e
        w_dear = ratio(update.advantage(batch)[0] / update.settings.alpha)
    assert w_dear[costly].mean() < w[costly].mean()
    assert float(dual.multiplier(model.actor)) > lam[-1]
