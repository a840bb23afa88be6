"""Load a Minari dataset as float32 torch transitions, normalise, split by episode.

The one subtle part is the cost offset: Minari stores N+1 infos per episode (the reset
info first), so the cost of transition t is `infos["cost"][t + 1]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from safecritic.configs.errors import DatasetError
from safecritic.configs.schema import DataConfig
from safecritic.envs.labelers import LABELERS
from safecritic.envs.minari_io import dataset_dir, dataset_exists, root_description
from safecritic.envs.registry import behaviors_for

# Floor on per-dimension std when normalising: a constant observation entry must not
# blow up to +-inf (d3rlpy's StandardObservationScaler uses the same 1e-3 epsilon).
MIN_OBS_STD = 1e-3


@dataclass
class Transitions:
    """A flat batch of transitions; every field has the same first dimension N."""

    obs: torch.Tensor  # (N, obs_dim) float32
    act: torch.Tensor  # (N, act_dim) float32
    rew: torch.Tensor  # (N,) float32
    cost: torch.Tensor  # (N,) float32, in [0, 1]
    next_obs: torch.Tensor  # (N, obs_dim) float32
    terminal: torch.Tensor  # (N,) float32, 1.0 where the episode terminated (goal or accident)
    timeout: torch.Tensor  # (N,) float32, 1.0 where it was truncated (time limit)
    episode: torch.Tensor  # (N,) int64, the Minari episode id
    behavior: torch.Tensor  # (N,) int64, index of the behaviour that acted (-1 if unknown)

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def select(self, index: torch.Tensor) -> "Transitions":
        """Rows `index` (a bool mask or integer indices) of every field."""
        return Transitions(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def episode_ids(self) -> torch.Tensor:
        return torch.unique(self.episode)

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.act.shape[1])


def episode_sums(transitions: Transitions, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode sums of a per-row quantity [E] (episodes in id order), and each row's episode index [N]:
    `sums[inverse]` spreads an episode's total back over its rows."""
    ids, inverse = torch.unique(transitions.episode, return_inverse=True)
    return torch.zeros(len(ids)).index_add_(0, inverse, values.float()), inverse


def successful_episode_rows(transitions: Transitions) -> torch.Tensor:
    """(N,) bool: the rows of episodes that terminated (not truncated) without any cost.

    On PointNav an episode terminates at the goal or at an accident, so these are the
    episodes that reached the goal; the gate's reference prior imitates them (gate.reference)."""
    cost, inverse = episode_sums(transitions, transitions.cost)
    terminated, _ = episode_sums(transitions, transitions.terminal)
    return ((cost == 0) & (terminated > 0))[inverse]


def discounted_returns(transitions: Transitions, gamma: float) -> torch.Tensor:
    """(N,) return-to-go sum_k gamma^k r_{t+k} of each step within its own episode: the
    n-step reward with n = the longest episode. A truncated episode's tail is unknown and
    counted as 0, so the figure is what the data *saw*, not a value estimate. Used as a
    lower bound on Q_R's target (critics.task.mc_lower_bound)."""
    longest = int(torch.unique_consecutive(transitions.episode, return_counts=True)[1].max()) if len(transitions) else 1
    return n_step_backups(transitions, longest, gamma).rew


@dataclass
class NStep:
    """Each step's n-step backup: the discounted reward of up to n steps within its episode,
    the observation after the last of them, whether that one terminated, and gamma^steps."""

    rew: torch.Tensor  # (N,)
    next_obs: torch.Tensor  # (N, obs_dim)
    terminal: torch.Tensor  # (N,)
    discount: torch.Tensor  # (N,)

    def select(self, index: torch.Tensor) -> "NStep":
        return NStep(self.rew[index], self.next_obs[index], self.terminal[index], self.discount[index])


def n_step_backups(transitions: Transitions, n: int, gamma: float) -> NStep:
    """n-step backups of every step (transitions in episode order). An episode's end cuts
    the sum short: a terminal step stops it, a truncated one bootstraps from its next
    observation, as the one-step target does."""
    rows = len(transitions)
    index = torch.arange(rows)
    episode = transitions.episode
    # Last row of each row's episode.
    change = torch.ones(rows, dtype=torch.bool)
    change[:-1] = episode[1:] != episode[:-1]
    ends = torch.nonzero(change).flatten()
    last = ends[torch.searchsorted(ends, index)]
    rew = torch.zeros(rows, dtype=torch.float64)
    for k in range(n):
        row = torch.minimum(index + k, last)
        rew += (index + k <= last).double() * gamma**k * transitions.rew[row].double()
    final = torch.minimum(index + n - 1, last)
    steps = (final - index + 1).double()
    return NStep(rew.float(), transitions.next_obs[final], transitions.terminal[final], (gamma**steps).float())


@dataclass
class NormStats:
    """Observation mean and std (computed on the training split only)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def of(cls, obs: torch.Tensor) -> "NormStats":
        return cls(obs.mean(0), obs.std(0).clamp_min(MIN_OBS_STD))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


@dataclass
class DatasetInfo:
    dataset_id: str
    path: str
    sha256: str
    env_id: str | None
    total_episodes: int
    act_low: list[float]
    act_high: list[float]
    behavior_names: tuple[str, ...]


@dataclass
class OfflineData:
    """What training needs: train / calibration / test splits, normalisation, provenance."""

    train: Transitions
    calib: Transitions
    test: Transitions
    stats: NormStats
    info: DatasetInfo


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(dataset_id: str, collect_hint: str | None):
    import minari

    if not dataset_exists(dataset_id):
        hint = collect_hint or "safecritic collect -c configs/pointnav.yaml -o data.dataset_id=" + dataset_id
        raise DatasetError(
            f"dataset {dataset_id!r} not found: looked in {dataset_dir(dataset_id)} ({root_description()}). "
            f"Create it with: {hint}"
        )
    try:
        return minari.load_dataset(dataset_id, download=False)
    except Exception as exc:  # a corrupt or foreign folder: say which and why
        raise DatasetError(f"dataset {dataset_id!r} at {dataset_dir(dataset_id)} cannot be read: {exc}") from None


def _box_bounds(space, what: str, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
    from gymnasium import spaces

    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise DatasetError(
            f"dataset {dataset_id!r}: {what} space is {space}; safecritic needs flat continuous (Box) spaces"
        )
    return space.low, space.high


def load_transitions(
    dataset_id: str, cost_labeler: str | None = None, collect_hint: str | None = None
) -> tuple[Transitions, DatasetInfo]:
    """Every transition of a local Minari dataset (never downloads)."""
    dataset = _open(dataset_id, collect_hint)
    _box_bounds(dataset.observation_space, "observation", dataset_id)
    act_low, act_high = _box_bounds(dataset.action_space, "action", dataset_id)
    env_spec = dataset.spec.env_spec
    env_id = env_spec.id if env_spec is not None else None

    columns: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(Transitions)}
    has_cost = has_behavior = None
    for ep in dataset.iterate_episodes():
        infos = ep.infos or {}
        if has_cost is None:
            has_cost, has_behavior = "cost" in infos, "behavior" in infos
        n = len(ep.actions)
        obs = np.asarray(ep.observations, dtype=np.float32)
        columns["obs"].append(obs[:-1])
        columns["next_obs"].append(obs[1:])
        columns["act"].append(np.asarray(ep.actions, dtype=np.float32).reshape(n, -1))
        columns["rew"].append(np.asarray(ep.rewards, dtype=np.float32))
        columns["terminal"].append(np.asarray(ep.terminations, dtype=np.float32))
        columns["timeout"].append(np.asarray(ep.truncations, dtype=np.float32))
        columns["episode"].append(np.full(n, ep.id, dtype=np.int64))
        if has_cost:
            columns["cost"].append(np.asarray(infos["cost"], dtype=np.float32)[1:])  # reset info first
        columns["behavior"].append(
            np.asarray(infos["behavior"], dtype=np.int64)[1:] if has_behavior else np.full(n, -1, dtype=np.int64)
        )
    if has_cost is None:
        raise DatasetError(f"dataset {dataset_id!r} has no episodes")

    arrays = {k: np.concatenate(v) for k, v in columns.items() if v}
    if not has_cost:
        if cost_labeler is None:
            raise DatasetError(
                f"dataset {dataset_id!r} has no 'cost' info; set a cost labeler with "
                f"-o data.cost_labeler=<name>; known labelers: {', '.join(sorted(LABELERS))}"
            )
        if cost_labeler not in LABELERS:
            raise DatasetError(f"unknown cost labeler {cost_labeler!r}; known labelers: {', '.join(sorted(LABELERS))}")
        labeler = LABELERS[cost_labeler]
        if arrays["obs"].shape[1] != labeler.obs_dim:
            raise DatasetError(
                f"cost labeler {cost_labeler!r} ({labeler.what}) expects {labeler.obs_dim}-dim observations, "
                f"dataset {dataset_id!r} has {arrays['obs'].shape[1]}; choose a labeler for this task"
            )
        arrays["cost"] = labeler(arrays["obs"], arrays["act"], arrays["next_obs"]).astype(np.float32)
    _refuse_non_finite(arrays, dataset_id)
    if arrays["cost"].min() < 0.0 or arrays["cost"].max() > 1.0:
        raise DatasetError(
            f"dataset {dataset_id!r}: costs must lie in [0, 1], found [{arrays['cost'].min()}, {arrays['cost'].max()}]"
        )

    transitions = Transitions(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
    main = Path(dataset.spec.data_path) / "main_data.hdf5"
    info = DatasetInfo(
        dataset_id=dataset_id,
        path=str(dataset_dir(dataset_id)),
        sha256=file_sha256(main) if main.is_file() else "",
        env_id=env_id,
        total_episodes=int(dataset.total_episodes),
        act_low=[float(x) for x in act_low],
        act_high=[float(x) for x in act_high],
        behavior_names=behaviors_for(env_id) if (has_behavior and env_id) else (),
    )
    return transitions, info


def _refuse_non_finite(arrays: dict[str, np.ndarray], dataset_id: str) -> None:
    bad_rows = np.zeros(len(arrays["obs"]), dtype=bool)
    for key in ("obs", "next_obs", "act", "rew", "cost"):
        values = arrays[key]
        bad = ~np.isfinite(values)
        bad_rows |= bad.reshape(len(values), -1).any(axis=1)
    if bad_rows.any():
        episodes = np.unique(arrays["episode"][bad_rows])
        shown = ", ".join(str(e) for e in episodes[:20]) + (" ..." if len(episodes) > 20 else "")
        raise DatasetError(
            f"dataset {dataset_id!r} holds non-finite values (NaN or inf) in {int(bad_rows.sum())} transitions "
            f"of {len(episodes)} episodes (ids: {shown}); clean or re-collect those episodes"
        )


def split_by_episode(
    transitions: Transitions, calib_fraction: float, seed: int, test_fraction: float = 0.0
) -> tuple[Transitions, Transitions, Transitions]:
    """Train, calibration and test sets that never share an episode.

    Calibration gets at least one episode and train keeps at least one; test may be
    empty when test_fraction is 0.
    """
    ids = transitions.episode_ids().numpy()
    if len(ids) < 2:
        raise DatasetError(f"need at least 2 episodes to split into train and calibration, found {len(ids)}")
    shuffled = np.random.default_rng(seed).permutation(ids)
    n_calib = min(max(1, int(round(calib_fraction * len(ids)))), len(ids) - 1)
    n_test = min(int(round(test_fraction * len(ids))), len(ids) - 1 - n_calib)
    calib_ids = torch.from_numpy(np.sort(shuffled[:n_calib]))
    test_ids = torch.from_numpy(np.sort(shuffled[n_calib : n_calib + n_test]))
    in_calib = torch.isin(transitions.episode, calib_ids)
    in_test = torch.isin(transitions.episode, test_ids)
    return transitions.select(~in_calib & ~in_test), transitions.select(in_calib), transitions.select(in_test)


def load_offline_data(data: DataConfig, collect_hint: str | None = None) -> OfflineData:
    """Load `data.dataset_id`, split it by episode and normalise with train statistics."""
    transitions, info = load_transitions(data.dataset_id, data.cost_labeler, collect_hint)
    train, calib, test = split_by_episode(transitions, data.calib_fraction, data.split_seed, data.test_fraction)
    return OfflineData(train=train, calib=calib, test=test, stats=NormStats.of(train.obs), info=info)
