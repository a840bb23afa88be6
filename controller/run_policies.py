"""Numpy policies from a trained model: the actor's mean action and the BC prior's mode.

What rollouts in the simulator call at every step (one observation in, one action out).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from safecritic.controller.model import SafeCriticModel

POLICIES = ("actor", "bc")


def numpy_policy(model: SafeCriticModel, which: str) -> Callable[[np.ndarray], np.ndarray]:
    """`actor`: tanh of the actor's mean; `bc`: the behaviour prior's most likely component."""
    if which not in POLICIES:
        raise ValueError(f"unknown policy {which!r}; known: {', '.join(POLICIES)}")
    model.eval()

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        x = model.normalize_obs(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
        unit = model.actor.deterministic(x) if which == "actor" else model.prior.mode(x)
        return model.from_unit_action(unit)[0].numpy()

    return act
