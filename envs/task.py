"""The task interface: what a task may add to its gymnasium env, and nothing more.

The generic layers (controller/, deploy/, configs/) never read a task's observation
entries nor branch on its id. What a task truly needs beyond its env lives in its own
module (envs/<task>/) behind this small interface, which the model, the gate and the
report compose without knowing what the pieces mean:

- `behaviors`: scripted data-collection policies by name (`safecritic collect`);
- `features`: a TorchScript-able module appending derived features to the raw
  observation (every network sees them; the export carries the module);
- `safe_action`: a TorchScript-able module mapping raw observations to the action the
  gate's fallback executes (e.g. a brake); without one, a constant;
- `plot_paths`: draws a few evaluation episodes for the report;
- `labelers`: cost functions for datasets recorded without a cost.

Every part is optional: a user's own task needs none of it (docs/byo.md), and may
register one with `register_task` from the module named in `env.imports`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import numpy as np

if TYPE_CHECKING:  # torch only where a task supplies modules
    import torch
    from torch import nn


class Behavior(Protocol):
    """A scripted data-collection policy. `reset` starts an episode with its own RNG."""

    name: str

    def reset(self, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action in the env's action space (float32)."""


LabelFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(obs, act, next_obs) arrays of N rows -> costs in [0, 1], shape (N,)."""


@dataclass(frozen=True)
class Labeler:
    """A cost function for datasets without a `cost` info, and the observation width it reads."""

    fn: LabelFn
    obs_dim: int
    what: str

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return self.fn(obs, act, next_obs)


@dataclass(frozen=True)
class Task:
    """Everything optional a task supplies; see the module docstring."""

    name: str
    behaviors: Mapping[str, Callable[[], Behavior]] = field(default_factory=dict)
    features: Callable[[], "nn.Module"] | None = None
    # (act_low, act_high) -> module: raw observations [B, obs_dim] -> actions [B, act_dim] in env units.
    safe_action: Callable[["torch.Tensor", "torch.Tensor"], "nn.Module"] | None = None
    # (episodes as evaluation records with traces, title, path) -> writes a PNG.
    plot_paths: Callable[[list[dict[str, Any]], str, Path], None] | None = None
    labelers: Mapping[str, Labeler] = field(default_factory=dict)


def safety_info(cost: float = 0.0, accident: bool = False, success: bool = False) -> dict[str, Any]:
    """The info a goal-reaching task returns at reset and on every step: the same keys each time,
    since Minari stores infos with N+1 entries (the reset's first)."""
    return {"cost": cost, "accident": accident, "success": success}


GENERIC = Task("generic")
"""What a task without a module of its own gets: nothing beyond its env."""
