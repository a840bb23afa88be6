"""Scripted behaviour policies per task, by name."""

from __future__ import annotations

from safecritic.configs.errors import ConfigError
from safecritic.envs.behaviors.base import Behavior
from safecritic.envs.behaviors.pointnav import POINTNAV_BEHAVIORS
from safecritic.envs.registry import TASK_BEHAVIORS, task_of

_BY_TASK = {"pointnav": POINTNAV_BEHAVIORS}
assert {t: tuple(b) for t, b in _BY_TASK.items()} == TASK_BEHAVIORS, "registry.TASK_BEHAVIORS is stale"


def make_behavior(env_id: str, name: str) -> Behavior:
    """A fresh behaviour `name` for the task behind `env_id`."""
    task = task_of(env_id)
    known = _BY_TASK.get(task or "", {})
    if name not in known:
        raise ConfigError(
            f"no behaviour {name!r} for {env_id}; known: {', '.join(known) or 'none (no scripted behaviours)'}"
        )
    return known[name]()


__all__ = ["Behavior", "make_behavior"]
