"""Numpy policies from a trained model: the actor's mean action and the BC prior's mode.

What rollouts in the simulator call at every step (one observation in, one action out).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from safecritic.configs.errors import RunError
from safecritic.controller.model import SafeCriticModel

POLICIES = ("actor", "plain", "bc", "bc_successful")


def numpy_policy(model: SafeCriticModel, which: str) -> Callable[[np.ndarray], np.ndarray]:
    """`actor`: tanh of the (constrained) actor's mean; `plain`: the unconstrained actor's;
    `bc`: the behaviour prior's mode; `bc_successful`: the reference prior's (filtered BC)."""
    if which not in POLICIES:
        raise ValueError(f"unknown policy {which!r}; known: {', '.join(POLICIES)}")
    if which == "plain" and model.plain_actor is None:
        raise RunError("this run trained no plain actor (policy.plain_actor: false): choose another --policy")
    if which == "bc_successful" and model.reference_prior is None:
        raise RunError("this run trained no reference prior (policy.prior.fit_successful: false): choose another --policy")
    model.eval()

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        x = model.normalize_obs(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
        if which in ("bc", "bc_successful"):
            unit = (model.prior if which == "bc" else model.reference_prior).mode(x)
        else:
            unit = (model.actor if which == "actor" else model.plain_actor).deterministic(x)
        return model.from_unit_action(unit)[0].numpy()

    return act
