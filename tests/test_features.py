"""PointNav's derived features: exact geometry, the declared width, and TorchScript (they ship in the controller)."""

from __future__ import annotations

import pytest
import torch

from safecritic.envs.pointnav.interface import PointNavFeatures
from safecritic.envs.pointnav.task import PointNavParams

# Agent at the origin moving +x at 0.5 m/s, goal 3 m ahead on +x; hazards at (1, 0.2),
# (-1, -0.5) and (0, -2), relative to the agent: observation layout of envs/pointnav/task.py.
OBS = torch.tensor([[0.0, 0.0, 0.5, 0.0, 3.0, 0.0, 1.0, 0.2, -1.0, -0.5, 0.0, -2.0]])
REACH = PointNavParams().hazard_radius + PointNavParams().agent_radius


def test_clearance_approach_and_goal_distance():
    out = PointNavFeatures()(OBS)
    assert out.shape == (1, 19)
    assert torch.equal(out[:, :12], OBS)  # the observation itself comes first, unchanged
    dist = torch.tensor([1.04**0.5, 1.25**0.5, 2.0])
    assert torch.allclose(out[0, 12:15], dist - REACH)
    # approach speed: velocity towards each hazard's centre (+ closing, - opening)
    assert torch.allclose(out[0, 15:18], torch.tensor([0.5 / 1.04**0.5, -0.5 / 1.25**0.5, 0.0]))
    assert out[0, 18] == pytest.approx(3.0)


def test_features_script_and_stay_finite_with_the_goal_or_a_hazard_on_the_agent():
    scripted = torch.jit.script(PointNavFeatures())
    degenerate = OBS.clone()
    degenerate[0, 4:8] = 0.0  # goal and the first hazard's centre exactly at the agent: no direction, yet no NaN
    assert torch.isfinite(scripted(degenerate)).all()
    assert torch.allclose(scripted(OBS), PointNavFeatures()(OBS))


def test_the_task_interface_gives_pointnav_its_features_and_a_users_task_none():
    from safecritic.controller.model import Identity, ModelSpec, SafeCriticModel
    from safecritic.pipeline import load
    from safecritic.envs.registry import task_for

    assert task_for("safecritic/PointNavBullet-v0").features is PointNavFeatures
    assert task_for("SomeUser/Task-v0").features is None and task_for("SomeUser/Task-v0").safe_action is None
    config = load(None)
    model = SafeCriticModel(config, ModelSpec(12, 2, 1.0, (-1.0, -1.0), (1.0, 1.0)))
    assert isinstance(model.features, PointNavFeatures) and model.obs_norm.mean.numel() == 19
    foreign = config.model_copy(update={"env": config.env.model_copy(update={"id": "SomeUser/Task-v0"})})
    model = SafeCriticModel(foreign, ModelSpec(5, 1, 1.0, (-1.0,), (1.0,)))
    assert isinstance(model.features, Identity) and model.obs_norm.mean.numel() == 5
