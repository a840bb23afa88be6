"""The tasks safecritic ships, by gymnasium id, and their scripted behaviours.

Kept free of heavy imports (no mujoco, no pybullet) so that configs can validate ids
and `import safecritic` can register the tasks cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from safecritic.configs.errors import UnknownEnvError


@dataclass(frozen=True)
class EnvEntry:
    entry_point: str
    task: str
    engine: str
    max_episode_steps: int


# DESIGN.md: PointNav exists in both engines with identical spaces, period and length.
POINTNAV_MAX_STEPS = 200

ENV_IDS: dict[str, EnvEntry] = {
    "safecritic/PointNav-v0": EnvEntry(
        "safecritic.envs.pointnav.mujoco_env:PointNavMujocoEnv", "pointnav", "mujoco", POINTNAV_MAX_STEPS
    ),
    "safecritic/PointNavBullet-v0": EnvEntry(
        "safecritic.envs.pointnav.bullet_env:PointNavBulletEnv", "pointnav", "pybullet", POINTNAV_MAX_STEPS
    ),
}

TASK_BEHAVIORS: dict[str, tuple[str, ...]] = {"pointnav": ("reckless", "cautious", "random", "zigzag")}


def task_of(env_id: str) -> str | None:
    """The task name of one of our env ids (None for a foreign gymnasium id)."""
    entry = ENV_IDS.get(env_id)
    return entry.task if entry else None


def behaviors_for(env_id: str) -> tuple[str, ...]:
    """Names of the scripted behaviours of the task behind `env_id` (may be empty)."""
    task = task_of(env_id)
    return TASK_BEHAVIORS.get(task, ()) if task else ()


def register_envs() -> None:
    """Register our ids with gymnasium (idempotent)."""
    import gymnasium as gym

    for env_id, entry in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry.entry_point, max_episode_steps=entry.max_episode_steps)


def check_env_id(env_id: str) -> str:
    """Return `env_id` if gymnasium can make it, else raise listing the known ids."""
    if env_id in ENV_IDS:
        return env_id
    import gymnasium as gym

    register_envs()
    if env_id in gym.registry:
        return env_id
    raise UnknownEnvError(
        f"unknown env id {env_id!r}; safecritic's tasks: {', '.join(sorted(ENV_IDS))} "
        "(any other registered gymnasium id works too)"
    )
