"""PointNav's derived features: exact geometry, the declared width, and TorchScript (they ship in the controller)."""

from __future__ import annotations

import pytest
import torch

from safecritic.envs.features import NoFeatures, PointNavFeatures, featurizer_for
from safecritic.envs.pointnav.task import PointNavParams

# Agent at the origin moving +x at 0.5 m/s, goal 3 m ahead on +x; hazards at (1, 0.2),
# (-1, -0.5) and (0, -2), relative to the agent: observation layout of envs/pointnav/task.py.
OBS = torch.tensor([[0.0, 0.0, 0.5, 0.0, 3.0, 0.0, 1.0, 0.2, -1.0, -0.5, 0.0, -2.0]])
REACH = PointNavParams().hazard_radius + PointNavParams().agent_radius


def test_clearance_approach_and_goal_distance():
    out = PointNavFeatures()(OBS)
    assert out.shape == (1, PointNavFeatures().out_dim(12)) == (1, 19)
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


def test_featurizer_for_the_task_and_its_switches():
    assert isinstance(featurizer_for("safecritic/PointNav-v0"), PointNavFeatures)
    assert isinstance(featurizer_for("safecritic/PointNav-v0", enabled=False), NoFeatures)
