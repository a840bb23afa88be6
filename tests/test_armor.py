"""ARMOR (controller/learners/armor.py): it trains, keeps its adversarial model in the checkpoint,
exports behind the gate and alone, and its model trades accuracy on the data for making the actor
look worse than the reference policy."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SMOKE
from tests.test_learners import _model_based_of

SMALL = {"model_steps": 150, "branches": 200, "refresh_every": 100, "model_width": 64}


@pytest.fixture(scope="module")
def armor_run(tmp_path_factory, smoke_dataset):
    """A short ARMOR smoke run: (run folder, config, model)."""
    from safecritic.configs import load_config
    from safecritic.controller.training import load_trained
    from safecritic.pipeline import train

    options = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL.items()) + "}"
    config = load_config(SMOKE, ["policy.learner=armor", "train.steps=100", "run.precision=fp32",
                                 f"policy.learner_options={options}"])
    run_dir = tmp_path_factory.mktemp("armor") / "run"
    train(config, run_dir)
    return (run_dir, *load_trained(run_dir)[:2])


def test_armor_trains_its_model_keeps_it_in_the_checkpoint_and_exports_gated_and_alone(armor_run):
    import json

    from safecritic.controller.training import load_checkpoint
    from safecritic.deploy.runtime import load
    from safecritic.envs.dataset import load_offline_data
    from safecritic.pipeline import export

    run_dir, config, model = armor_run
    lines = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    critic = [line for line in lines if line["phase"] == "critic"]
    assert len(critic) == 2 and all(np.isfinite([line["relative_value"], line["model_nll"]]).all() for line in critic)
    assert critic[-1]["model_bellman"] < critic[0]["model_bellman"]  # f and M grow consistent
    assert bool(model.dynamics.fitted) and model.dynamics.net.body[0].weight.shape[-1] == 64
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["optimizers"]["dynamics"]["state"]  # the model's Adam moments: it trained during the updates
    _, update, _ = _model_based_of(model, config, "armor", **SMALL)
    assert "model_skill" not in update.refresh()  # a resumed run continues the adversary: it does not refit it
    x = load_offline_data(config.data).test.obs[:64].numpy()
    for variant in ("gated", "gate_off"):
        export(run_dir, Path(run_dir) / variant, variant)  # export itself checks TorchScript parity
        controller = load(Path(run_dir) / variant)
        actions, records = controller.act(x)
        fault, fault_record = controller.act(np.full(x.shape[1], np.nan, np.float32))
        assert np.isfinite(actions).all() and (records[:, 0] != 3).all()  # no faults on data states
        assert np.isfinite(fault).all() and fault_record[0] == 3  # a NaN observation: the safe action


def test_armors_model_trades_accuracy_for_a_lower_value_of_the_actor_against_the_reference(armor_run):
    """From the same trained state, seed and batches, 300 more updates with the model's likelihood
    weight lambda at 1000 (the adversarial term ~0 against it) and at 0.01 (the adversarial term
    dominates): the adversarial model is less accurate on held-out rows (NLL, and the one-step error
    of its mean s'), f is more Bellman-consistent under it, and the relative value
    E[f(s, pi) - f(s, pi_ref)] on held-out states, by the critic trained with it, is lower.
    Measured over 5 seeds of the batches and updates (2 threads): NLL 1.25-1.30 against 15.6-22.7;
    s' error 0.4975-0.4978 against 0.520-0.528 (3 seeds); model Bellman error 0.71-0.82 against 0.018-0.028;
    relative value -0.005 to -0.010 against -0.035 to -0.039 (Q_R ~0.45 there, standard error of
    each value ~0.0006)."""
    from safecritic.controller.policies import MixturePolicy
    from safecritic.controller.update import adam
    from safecritic.critics.dynamics import held_out_error
    from safecritic.envs.dataset import load_offline_data

    _, config, trained = armor_run
    split = load_offline_data(config.data)

    def branch(model_weight: float) -> dict[str, float]:
        model, update, data = _model_based_of(copy.deepcopy(trained), config, "armor", **SMALL, beta=5.0,
                                              model_lr=3e-4, model_weight=model_weight)
        update.opt["critic"] = adam(model.critic.parameters(), config.critics.lr)
        g = torch.Generator().manual_seed(1)
        for _ in range(300):
            out = update(data.sample(128, g), data.sample(128, g))
        dynamics, test = model.dynamics, split.test
        with torch.no_grad():
            x, draw = model.normalize_obs(test.obs), torch.Generator().manual_seed(0)
            pi, ref = (MixturePolicy.sample(p.params(x), 8, draw)[0] for p in (model.actor, model.reference))
            return {"nll": float(dynamics.loss(test, torch.arange(len(test)).expand(dynamics.members, -1))),
                    "error": held_out_error(dynamics, split.train, test).next_obs_mse,
                    "bellman": float(out["model_bellman"]),
                    "relative": float((model.critic(x, pi)[0] - model.critic(x, ref)[0]).mean())}

    accurate, adversarial = branch(1000.0), branch(0.01)
    assert adversarial["nll"] > 3.0 * accurate["nll"], (accurate, adversarial)
    assert adversarial["error"] > 1.02 * accurate["error"], (accurate, adversarial)
    assert adversarial["bellman"] < 0.5 * accurate["bellman"], (accurate, adversarial)
    assert adversarial["relative"] < accurate["relative"] - 0.01, (accurate, adversarial)


def test_the_models_reparameterised_draw_is_steps_draw_and_passes_a_gradient(armor_run):
    from safecritic.envs.dataset import load_offline_data

    _, config, model = armor_run
    rows = load_offline_data(config.data).test.select(torch.arange(32))
    next_obs, reward, _, _ = model.dynamics.step(rows.obs, rows.act, torch.Generator().manual_seed(7))
    drawn_obs, drawn_reward = model.dynamics.rsample(rows.obs, rows.act, torch.Generator().manual_seed(7))
    torch.testing.assert_close((drawn_obs, drawn_reward), (next_obs, reward))
    drawn_reward.sum().backward()
    assert model.dynamics.net.head.weight.grad.abs().sum() > 0
    model.dynamics.zero_grad(set_to_none=True)
