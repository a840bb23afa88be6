"""envs/dataset.py and collection: cost offset, split, provenance, and every refusal."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from safecritic.configs import DatasetError, load_config
from safecritic.envs.collect import collect_dataset
from safecritic.envs.dataset import Transitions, load_offline_data, load_transitions, split_by_episode, successful_episode_rows
from safecritic.envs.pointnav.interface import hazard_contact as pointnav_hazard
from safecritic.envs.minari_io import dataset_dir

from conftest import SMOKE

ACT_SPACE = gym.spaces.Box(-1, 1, (2,), np.float32)


def _write(dataset_id: str, episodes: list[dict], with_cost: bool = True, obs_dim: int = 3) -> None:
    """A hand-made dataset: each episode {'T': steps, 'accident_at': step or None}."""
    buffers = []
    for i, spec in enumerate(episodes):
        t = spec["T"]
        obs = np.arange((t + 1) * obs_dim, dtype=np.float32).reshape(t + 1, obs_dim) / 100 + i
        obs[spec.get("nan_at", t + 5) if spec.get("nan_at") is not None else slice(0, 0)] = np.nan
        cost = np.zeros(t + 1)
        term = np.zeros(t, dtype=bool)
        if spec.get("accident_at") is not None:
            k = spec["accident_at"]
            cost[k + 1] = 1.0  # the info after step k (index 0 is the reset info)
            term[k] = True
        infos = {"accident": cost.astype(bool), "success": np.zeros(t + 1, dtype=bool)}
        if with_cost:
            infos["cost"] = cost
        buffers.append(EpisodeBuffer(
            id=i, observations=obs, actions=np.zeros((t, 2), np.float32), rewards=np.ones(t),
            terminations=term, truncations=~term & (np.arange(t) == t - 1), infos=infos,
        ))
    obs_space = gym.spaces.Box(-100, 100, (obs_dim,), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari's metadata nags
        minari.create_dataset_from_buffers(dataset_id, buffers, observation_space=obs_space, action_space=ACT_SPACE)


def test_cost_offset_on_known_accident_steps():
    _write("test/offset-v0", [{"T": 5, "accident_at": 4}, {"T": 7, "accident_at": None}, {"T": 3, "accident_at": 2}])
    tr, info = load_transitions("test/offset-v0")
    assert len(tr) == 15
    expected = torch.tensor([0, 0, 0, 0, 1] + [0] * 7 + [0, 0, 1], dtype=torch.float32)
    torch.testing.assert_close(tr.cost, expected)
    torch.testing.assert_close(tr.terminal, expected)  # accidents terminate, on the same row
    assert tr.timeout[5:12].tolist() == [0] * 6 + [1]
    assert tr.episode.tolist() == [0] * 5 + [1] * 7 + [2] * 3
    torch.testing.assert_close(tr.next_obs[:4], tr.obs[1:5])  # next_obs is the following obs
    assert all(t.dtype == torch.float32 for t in (tr.obs, tr.act, tr.rew, tr.cost, tr.next_obs, tr.terminal, tr.timeout))
    assert info.behavior_names == () and (tr.behavior == -1).all()


def test_collected_costs_match_hazard_contact(smoke_dataset):
    tr, info = load_transitions(smoke_dataset)
    assert info.env_id == "safecritic/PointNav-v0"
    assert info.behavior_names == ("reckless", "cautious", "random", "zigzag")
    assert tr.cost.sum() > 0  # reckless crashes in the smoke data
    relabelled = pointnav_hazard(tr.obs.numpy(), tr.act.numpy(), tr.next_obs.numpy())
    np.testing.assert_array_equal(relabelled, tr.cost.numpy())  # cost t is about s_{t+1}
    assert torch.all(tr.terminal[tr.cost > 0] == 1)
    assert len(info.sha256) == 64


def test_split_is_by_episode_and_disjoint(smoke_config, smoke_dataset):
    data = load_offline_data(smoke_config.data)
    train_ids = set(data.train.episode.tolist())
    calib_ids = set(data.calib.episode.tolist())
    test_ids = set(data.test.episode.tolist())
    assert train_ids and calib_ids and test_ids
    assert not (train_ids & calib_ids) and not (train_ids & test_ids) and not (calib_ids & test_ids)
    assert len(train_ids) + len(calib_ids) + len(test_ids) == data.info.total_episodes
    assert len(data.train) + len(data.calib) + len(data.test) == len(load_transitions(smoke_dataset)[0])
    torch.testing.assert_close(data.stats.mean, data.train.obs.mean(0))  # train statistics only
    again = load_offline_data(smoke_config.data)
    assert set(again.calib.episode.tolist()) == calib_ids  # the split is seeded


def test_split_needs_two_episodes():
    _write("test/single-v0", [{"T": 4}])
    tr, _ = load_transitions("test/single-v0")
    with pytest.raises(DatasetError, match="at least 2 episodes"):
        split_by_episode(tr, 0.2, 0)
    _write("test/pair-v0", [{"T": 4}, {"T": 3}])
    train, calib, test = split_by_episode(load_transitions("test/pair-v0")[0], 0.5, 0, test_fraction=0.5)
    assert len(train) and len(calib) and not len(test)  # training keeps an episode


def test_missing_dataset_says_where_it_looked_and_how_to_create_it(minari_root):
    with pytest.raises(DatasetError) as err:
        load_transitions("safecritic/pointnav/none-v0")
    text = str(err.value)
    assert f"MINARI_DATASETS_PATH={minari_root}" in text
    assert "safecritic collect" in text


def test_no_cost_needs_a_labeler_and_labeler_works():
    _write("test/nocost-v0", [{"T": 4}, {"T": 6}], with_cost=False, obs_dim=11)
    with pytest.raises(DatasetError, match="known labelers: hopper_velocity, pointnav_hazard"):
        load_transitions("test/nocost-v0")
    tr, _ = load_transitions("test/nocost-v0", cost_labeler="hopper_velocity")
    expected = (tr.next_obs[:, 5] > 0.7402).float()  # Hopper's x-velocity is observation 5
    assert expected.sum() > 0 and torch.equal(tr.cost, expected)
    with pytest.raises(DatasetError, match="expects 12-dim observations"):
        load_transitions("test/nocost-v0", cost_labeler="pointnav_hazard")


def test_non_finite_values_are_refused_with_count_and_episodes():
    _write("test/nan-v0", [{"T": 5}, {"T": 5, "nan_at": 2}, {"T": 5}])
    with pytest.raises(DatasetError) as err:
        load_transitions("test/nan-v0")
    text = str(err.value)
    assert "2 transitions" in text and "1 episodes (ids: 1)" in text  # obs 2 is next_obs of row 1 and obs of row 2


def test_existing_dataset_is_never_silently_replaced(smoke_config, smoke_dataset):
    main = dataset_dir(smoke_dataset) / "data" / "main_data.hdf5"
    before = (main.stat().st_mtime_ns, main.read_bytes())
    with pytest.raises(DatasetError, match="--overwrite"):
        collect_dataset(smoke_config)
    assert (main.stat().st_mtime_ns, main.read_bytes()) == before
    leftovers = [p for p in os.listdir(dataset_dir("")) if p.startswith(".staging")]
    assert leftovers == []


def test_overwrite_replaces_and_is_reproducible(minari_root):
    config = load_config(SMOKE, ["data.dataset_id=test/again-v0", "data.episodes=6"])
    first = collect_dataset(config)
    a, _ = load_transitions("test/again-v0")
    second = collect_dataset(config, overwrite=True)
    b, _ = load_transitions("test/again-v0")
    assert first.transitions == second.transitions
    torch.testing.assert_close(a.obs, b.obs)  # same config -> same data
    two_workers = load_config(SMOKE, ["data.dataset_id=test/again-v0", "data.episodes=6", "data.workers=2"])
    collect_dataset(two_workers, overwrite=True)
    c, _ = load_transitions("test/again-v0")
    torch.testing.assert_close(a.obs, c.obs)  # worker count does not change the data


def test_successful_episodes_are_defined_for_any_task():
    """With a success signal: cost-free episodes that reached it. Without one (a time-limited task, no
    terminal goal): cost-free episodes whose return is at or above the quantile. Never "terminated"."""
    t = Transitions(
        obs=torch.zeros(9, 1), act=torch.zeros(9, 1), next_obs=torch.zeros(9, 1),
        rew=torch.tensor([1, 1, 5, 5, 0, 0, 3, 3, 0.0]),  # returns 2, 10, 0, 6, 0
        cost=torch.tensor([0, 0, 0, 1, 0, 0, 0, 0, 0.0]),  # episode 1 has a cost
        terminal=torch.tensor([0, 1, 0, 1, 0, 0, 0, 0, 0.0]),
        timeout=torch.tensor([0, 0, 0, 0, 0, 1, 0, 1, 1.0]),
        success=torch.tensor([0, 1, 0, 0, 0, 0, 0, 1, 0.0]),  # episode 3 succeeds on its last step, truncated
        episode=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4]), behavior=torch.full((9,), -1),
    )
    with_signal = successful_episode_rows(t, has_success=True, quantile=0.5)
    assert with_signal.tolist() == [True, True, False, False, False, False, True, True, False]
    # No signal: the cost-free episodes 0, 2, 3, 4 return 2, 0, 6, 0; their median is 1.
    without = successful_episode_rows(t, has_success=False, quantile=0.5)
    assert without.tolist() == [True, True, False, False, False, False, True, True, False]
    assert successful_episode_rows(t, has_success=False, quantile=0.9).tolist() == [False] * 6 + [True, True, False]
    # An episode budget of 1: episode 1 (cost 1, return 10) is within it and now the best.
    budget = successful_episode_rows(t, has_success=False, quantile=0.9, max_cost=1.0)
    assert budget.tolist() == [False, False, True, True, False, False, False, False, False]
