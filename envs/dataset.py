"""Load a Minari dataset as float32 torch transitions, normalise, split by episode.

The one subtle part is the cost offset: Minari stores N+1 infos per episode (the reset
info first), so the cost of transition t is `infos["cost"][t + 1]`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from safecritic.configs.errors import DatasetError
from safecritic.configs.schema import DataConfig
from safecritic.envs.minari_io import dataset_dir, dataset_exists, root_description
from safecritic.envs.registry import behaviors_for, labelers

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
    success: torch.Tensor  # (N,) float32, 1.0 where info["success"] was set after the step (0 without the info)
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


def successful_episode_rows(transitions: Transitions, has_success: bool, quantile: float,
                            max_cost: float = 0.0) -> torch.Tensor:
    """(N,) bool: the rows of the episodes the data counts as successful, for any task.

    Successful = a summed cost of at most `max_cost` (0: no cost at all; a task judged against an
    episode budget passes its budget), and: where the data records a success signal, it was set;
    where it does not (a task without a terminal goal), the episode's return is at or above
    `quantile` of those episodes' returns. Never "terminated": an episode may end for other
    reasons, and a time-limited task never terminates."""
    cost, inverse = episode_sums(transitions, transitions.cost)
    returns, _ = episode_sums(transitions, transitions.rew)
    within = cost <= max_cost
    if has_success:
        reached, _ = episode_sums(transitions, transitions.success)
        return (within & (reached > 0))[inverse]
    if not within.any():
        return torch.zeros(len(transitions), dtype=torch.bool)
    bar = torch.quantile(returns[within].double(), quantile).float()
    return (within & (returns >= bar))[inverse]


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
    has_success: bool  # whether the data records info["success"] (else "successful" is a return quantile)


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

    obs_dim, act_dim = int(dataset.observation_space.shape[0]), int(act_low.shape[0])
    columns: dict[str, list[np.ndarray]] = {f.name: [] for f in fields(Transitions)}
    info_keys: tuple[str, ...] | None = None
    for ep in _episodes(dataset, dataset_id):
        if info_keys is None:  # the first episode says which infos the data records
            info_keys = tuple(k for k in ("cost", "behavior", "success") if k in (ep.infos or {}))
        for key, value in _episode_columns(ep, obs_dim, act_dim, info_keys, dataset_id).items():
            columns[key].append(value)
    if info_keys is None:
        raise DatasetError(f"dataset {dataset_id!r} has no episodes")
    has_cost, has_behavior, has_success = ("cost" in info_keys, "behavior" in info_keys, "success" in info_keys)

    arrays = {k: np.concatenate(v) for k, v in columns.items() if v}
    if not has_cost:
        known = labelers()
        if cost_labeler is None:
            raise DatasetError(
                f"dataset {dataset_id!r} has no 'cost' info; set a cost labeler with "
                f"-o data.cost_labeler=<name>; known labelers: {', '.join(sorted(known))} (a task adds its own: envs/task.py)"
            )
        if cost_labeler not in known:
            raise DatasetError(f"unknown cost labeler {cost_labeler!r}; known labelers: {', '.join(sorted(known))}")
        labeler = known[cost_labeler]
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
        has_success=bool(has_success),
    )
    return transitions, info


REPAIR = "re-collect it (safecritic collect --overwrite, for a dataset safecritic collected) or restore it from a good copy"


def _episodes(dataset, dataset_id: str) -> Iterator:
    """The dataset's episodes; a file h5py cannot read (truncated, empty, garbled: an interrupted
    copy) is a DatasetError naming the file and the episode, not an OSError from deep in h5py."""
    episodes = iter(dataset.iterate_episodes())
    read = 0
    while True:
        try:
            ep = next(episodes)
        except StopIteration:
            return
        except Exception as exc:  # h5py raises OSError, KeyError or ValueError depending on the damage
            main = Path(dataset.spec.data_path) / "main_data.hdf5"
            raise DatasetError(
                f"dataset {dataset_id!r}: {main} cannot be read after {read} episodes "
                f"({exc.__class__.__name__}: {exc}); the file is truncated or corrupt: {REPAIR}"
            ) from None
        read += 1
        yield ep


def _numeric(value, dtype, what: str) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: refused below, with its episode
            return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{what} is not numeric ({exc}); {REPAIR}") from None


def _episode_columns(ep, obs_dim: int, act_dim: int, info_keys: tuple[str, ...], dataset_id: str) -> dict[str, np.ndarray]:
    """One episode's rows, after checking every array's shape against the spaces and the step count:
    N actions need N+1 observations and N+1 entries of every info (the reset info first), so a
    short or wide array is named here rather than misaligning every later episode."""
    where = f"dataset {dataset_id!r}, episode {ep.id}"
    act = _numeric(ep.actions, np.float32, f"{where}: actions")
    n = len(act)
    expected = {"actions": (n, act_dim), "observations": (n + 1, obs_dim), "rewards": (n,),
                "terminations": (n,), "truncations": (n,)}
    values = {"actions": act.reshape(n, -1) if act.ndim == 1 else act,
              "observations": _numeric(ep.observations, np.float32, f"{where}: observations"),
              **{k: _numeric(getattr(ep, k), np.float32, f"{where}: {k}") for k in ("rewards", "terminations", "truncations")}}
    infos = ep.infos or {}
    for key in info_keys:
        if key not in infos:
            raise DatasetError(f"{where} has no {key!r} info while the first episode has one: "
                               f"every episode must record the same infos; {REPAIR}")
        values[f"infos[{key!r}]"] = _numeric(infos[key], np.int64 if key == "behavior" else np.float32,
                                             f"{where}: infos[{key!r}]")
        expected[f"infos[{key!r}]"] = (n + 1,)
    for name, shape in expected.items():
        if values[name].shape != shape:
            raise DatasetError(
                f"{where}: {name} has shape {values[name].shape}, expected {shape} ({n} steps, "
                f"{obs_dim}-dim observations, {act_dim}-dim actions; observations and infos hold one more "
                f"entry than actions, the reset's); {REPAIR}"
            )
    obs = values["observations"]
    return {
        "obs": obs[:-1], "next_obs": obs[1:], "act": values["actions"], "rew": values["rewards"],
        "terminal": values["terminations"], "timeout": values["truncations"],
        "episode": np.full(n, ep.id, dtype=np.int64),
        **({"cost": values["infos['cost']"][1:]} if "cost" in info_keys else {}),  # reset info first
        "success": values["infos['success']"][1:] if "success" in info_keys else np.zeros(n, dtype=np.float32),
        "behavior": values["infos['behavior']"][1:] if "behavior" in info_keys else np.full(n, -1, dtype=np.int64),
    }


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
    train, calib, test = split_by_episode(transitions, data.calib_fraction, data.seed, data.test_fraction)
    return OfflineData(train=train, calib=calib, test=test, stats=NormStats.of(train.obs), info=info)
