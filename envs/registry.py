"""The tasks safecritic ships, by gymnasium id, and the task interface behind any id.

Kept free of heavy imports (no mujoco, no pybullet, no torch) so that `import safecritic`
registers the tasks cheaply. An env id is a gymnasium id, optionally with gymnasium's own
module prefix (`mymodule:my/Task-v0`: the module is imported first, so that it registers
the id); `env.imports` names further modules to import. A user's module may also
register a `Task` (envs/task.py) for its ids with `register_task`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Iterable

from safecritic.configs.errors import ConfigError, UnknownEnvError
from safecritic.envs.task import GENERIC, Behavior, Labeler, Task


@dataclass(frozen=True)
class EnvEntry:
    entry_point: str
    task: str  # "module:attribute" of the Task object
    engine: str
    max_episode_steps: int


# DESIGN.md: PointNav exists in both engines with identical spaces, period and length.
POINTNAV_MAX_STEPS = 200
POINTNAV_TASK = "safecritic.envs.pointnav.interface:TASK"
# PandaReach: the same twin contract (spaces, 0.05 s period, 200 steps) in PyBullet and MuJoCo.
PANDA_MAX_STEPS = 200
PANDA_TASK = "safecritic.envs.panda.interface:TASK"

ENV_IDS: dict[str, EnvEntry] = {
    "safecritic/PointNav-v0": EnvEntry(
        "safecritic.envs.pointnav.mujoco_env:PointNavMujocoEnv", POINTNAV_TASK, "mujoco", POINTNAV_MAX_STEPS
    ),
    "safecritic/PointNavBullet-v0": EnvEntry(
        "safecritic.envs.pointnav.bullet_env:PointNavBulletEnv", POINTNAV_TASK, "pybullet", POINTNAV_MAX_STEPS
    ),
    "safecritic/PandaReach-v0": EnvEntry(
        "safecritic.envs.panda.bullet_env:PandaReachBulletEnv", PANDA_TASK, "pybullet", PANDA_MAX_STEPS
    ),
    "safecritic/PandaReachMj-v0": EnvEntry(
        "safecritic.envs.panda.mujoco_env:PandaReachMujocoEnv", PANDA_TASK, "mujoco", PANDA_MAX_STEPS
    ),
    "safecritic/HopperVelocity-v0": EnvEntry(
        "safecritic.envs.hopper.env:HopperVelocityEnv", "safecritic.envs.hopper:TASK", "mujoco", 1000
    ),
}
# Tasks for gymnasium's own ids (nothing to register, only labelers for their datasets).
FOREIGN_TASKS: dict[str, str] = {"Hopper-v5": "safecritic.envs.hopper:TASK"}

_REGISTERED: dict[str, Task] = {}  # register_task: a user's tasks, by env id


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """`module:Env-v0` -> ('module', 'Env-v0'); a plain id -> (None, id). gymnasium's own grammar."""
    module, sep, name = env_id.rpartition(":")
    return (module, name) if sep else (None, env_id)


def register_envs() -> None:
    """Register our ids with gymnasium (idempotent)."""
    import gymnasium as gym

    for env_id, entry in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry.entry_point, max_episode_steps=entry.max_episode_steps)


def import_modules(modules: Iterable[str], setting: str = "env.imports") -> None:
    """Import a user's modules (they register their envs and tasks), with a clear error."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"{setting}: cannot import module {name!r} ({exc}); put the folder that holds it on PYTHONPATH "
                "or install it, and name it as you would in an import statement"
            ) from None


def check_env_id(env_id: str) -> str:
    """Return `env_id` if gymnasium can make it (importing its module prefix first), else raise
    listing our ids."""
    import gymnasium as gym

    register_envs()
    module, name = split_env_id(env_id)
    if module is not None:
        import_modules([module], f"env id {env_id!r}")
    if name in gym.registry:
        return env_id
    prefix = f" after importing {module!r}" if module else ""
    raise UnknownEnvError(
        f"unknown env id {env_id!r}{prefix}; safecritic's tasks: {', '.join(sorted(ENV_IDS))}. Any registered "
        "gymnasium id works, and `module:Env-v0` (or env.imports: [module]) imports the module that registers yours"
    )


def register_task(env_ids: str | Iterable[str], task: Task) -> None:
    """Attach a Task (behaviours, features, a safe action, ...) to a user's env ids."""
    for env_id in [env_ids] if isinstance(env_ids, str) else env_ids:
        _REGISTERED[split_env_id(env_id)[1]] = task


def _load(spec: str) -> Task:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def task_for(env_id: str | None) -> Task:
    """The Task behind an env id: ours, a registered one, or the generic task (no extras)."""
    if env_id is None:
        return GENERIC
    module, name = split_env_id(env_id)
    if name in ENV_IDS:
        return _load(ENV_IDS[name].task)
    if name not in _REGISTERED and module is not None:
        import_modules([module], f"env id {env_id!r}")  # its module may register a task at import
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in FOREIGN_TASKS:
        return _load(FOREIGN_TASKS[name])
    return GENERIC


def behaviors_for(env_id: str) -> tuple[str, ...]:
    """Names of the scripted behaviours of the task behind `env_id` (may be empty)."""
    return tuple(task_for(env_id).behaviors)


def labelers() -> dict[str, Labeler]:
    """Every named cost labeler: those of our tasks and of the registered ones."""
    tasks = [_load(e.task) for e in ENV_IDS.values()] + [_load(s) for s in FOREIGN_TASKS.values()]
    out: dict[str, Labeler] = {}
    for task in [*tasks, *_REGISTERED.values()]:
        out.update(task.labelers)
    return out


def make_behavior(env_id: str, name: str) -> Behavior:
    """A fresh scripted behaviour `name` of the task behind `env_id`."""
    known = task_for(env_id).behaviors
    if name not in known:
        raise ConfigError(
            f"no behaviour {name!r} for {env_id}; known: {', '.join(known) or 'none (no scripted behaviours)'}"
        )
    return known[name]()
