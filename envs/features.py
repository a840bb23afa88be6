"""Building blocks for a task's derived-feature module (envs/task.py's `features`), TorchScript-able."""

from __future__ import annotations

import torch


def smooth_norm(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm over the last dimension, with a finite gradient at 0 (training
    differentiates through the features)."""
    return torch.sqrt((x * x).sum(-1) + 1e-12)
