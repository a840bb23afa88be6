"""Reacher with a keep-out disc: a user-side "bring your own task" example for safecritic.

The project does not ship this. It is what a user writes to get their own robot task into
the offline safe-RL pipeline: a gymnasium env that puts a per-step ``info["cost"]`` in
every step (DSRL-style: cost never ends an episode), three scripted drivers, and a
``collect()`` that writes a local Minari dataset with the costs in its infos.

Put this folder on the path, then make the env by its module-qualified id::

    PYTHONPATH=docs/byo python -c "import gymnasium as gym; gym.make('keepout_reacher:keepout/ReacherKeepOut-v0')"

The task is gymnasium's MuJoCo ``Reacher-v5`` (same observation and action Boxes, same
reward) plus a fixed disc in the plane that the fingertip should stay out of, and a
100-step limit instead of Reacher's 50, because going round the disc takes longer. The disc
sits just counter-clockwise of the arm's start pose and reaches past the arm's full
reach (0.21 m). The cheap way to reach a target on that side is to swing the stretched
arm round, and that sweeps the fingertip through the disc. Going round means folding the
elbow and passing inside it, which is slower. Targets are never drawn within
``TARGET_MARGIN`` of the disc.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.envs.registration import EnvSpec

# --- task constants -------------------------------------------------------------------------
KEEPOUT_CENTER = np.array([0.16, 0.08])  # m, world xy; the arm base is the origin
KEEPOUT_RADIUS = 0.05  # m; the disc spans 0.13-0.23 m from the base, the arm reaches 0.21
TARGET_MARGIN = 0.02  # m; targets lie at least this far outside the disc
MAX_EPISODE_STEPS = 100  # 2 s at dt = 0.02; in Reacher's own 50, Cautious misses ~15% of targets

ENV_NAME = "keepout/ReacherKeepOut-v0"  # the id in gymnasium's registry
ENV_ID = f"keepout_reacher:{ENV_NAME}"  # what users pass to gym.make (imports this module first)

LINK1, LINK2 = 0.10, 0.11  # m, from reacher.xml: body1 at 0.1, the fingertip 0.11 further out
ELBOW_SOFT_LIMIT = 2.7  # rad; reacher.xml stops joint1 at +-3.0


def keepout_distance(point: np.ndarray) -> float:
    """Signed distance of a plane point from the disc's edge (negative inside)."""
    return float(np.linalg.norm(np.asarray(point)[:2] - KEEPOUT_CENTER) - KEEPOUT_RADIUS)


class ReacherKeepOutEnv(ReacherEnv):
    """Reacher-v5 plus the keep-out disc.

    This subclasses Reacher instead of wrapping it. That way ``env.unwrapped``, which
    check_env and minari look at, is the task itself, and target rejection runs inside
    Reacher's own reset on its own RNG, so ``reset(seed=s)`` stays exactly reproducible.
    The constructor is Reacher's, so its kwargs (render_mode, ...) and EzPickle work unchanged.
    """

    def reset_model(self) -> np.ndarray:
        """Reacher's reset, drawn again from the same RNG until the target is clear of the disc.

        This rejects about 12% of Reacher's targets. The redraws use the env's own
        stream, so an episode still depends only on its reset seed.
        """
        while True:
            obs = super().reset_model()
            if keepout_distance(self.goal) > TARGET_MARGIN:
                return obs

    def _cost(self) -> float:
        return 1.0 if keepout_distance(self.get_body_com("fingertip")) < 0.0 else 0.0

    def _get_reset_info(self) -> dict[str, Any]:
        # Always 0.0 in practice: every start pose has the fingertip >= 0.017 m outside the disc.
        return {"cost": self._cost()}

    # MujocoEnv annotates info as dict[str, np.float64]; gymnasium's Env contract is dict[str, Any].
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:  # type: ignore[override]
        """Reacher's step plus the cost. Entering the disc breaks a constraint; it does not end the episode."""
        obs, reward, terminated, truncated, info = super().step(action)
        info["cost"] = self._cost()
        return obs, reward, terminated, truncated, info


if ENV_NAME not in gym.registry:  # idempotent: the file may be imported twice (as __main__ too)
    gym.register(
        id=ENV_NAME,
        entry_point="keepout_reacher:ReacherKeepOutEnv",
        max_episode_steps=MAX_EPISODE_STEPS,
    )


# --- reading the observation (the drivers use nothing else) -------------------------------------
# Reacher-v5: [cos q1, cos q2, sin q1, sin q2, target x, target y, dq1, dq2, (tip - target) x, y]


def _angles(obs: np.ndarray) -> np.ndarray:
    return np.arctan2(obs[2:4], obs[0:2])


def _tip(obs: np.ndarray) -> np.ndarray:
    return obs[4:6] + obs[8:10]


def _jacobian(q: np.ndarray) -> np.ndarray:
    """d(tip xy)/d(q1, q2) of the planar 2-link arm."""
    s1, c1 = math.sin(q[0]), math.cos(q[0])
    s12, c12 = math.sin(q[0] + q[1]), math.cos(q[0] + q[1])
    return np.array([[-LINK1 * s1 - LINK2 * s12, -LINK2 * s12], [LINK1 * c1 + LINK2 * c12, LINK2 * c12]])


def _segment_clearance(p: np.ndarray, g: np.ndarray) -> float:
    """Distance from the disc centre to the segment p->g."""
    d = g - p
    t = float(np.clip(np.dot(KEEPOUT_CENTER - p, d) / max(float(np.dot(d, d)), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p + t * d - KEEPOUT_CENTER))


class Driver(Protocol):
    name: str

    def reset(self, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class _JacobianTranspose:
    """Jacobian-transpose fingertip controller: a virtual spring pulls the tip straight at ``aim``.

    ``J^T`` maps the spring force ``gain * (aim - tip)`` to joint rates, capped at
    ``max_rate``. A velocity loop turns the rate error into torque. Unlike a resolved-rate
    (J^-1) controller, J^T moves the joints the cheap way: it swings the stretched arm
    round to a far target instead of folding it through the base, and it needs no care at
    Reacher's singular start pose. Two patches fix what J^T cannot do on its own: pull
    along the arm's own line, and stay off the elbow stop.
    Reacher's motors have gear 200 on armature 1, so small actions go far, and the reward
    charges ``|a|^2`` per step (weight 1; Reacher's docstring says 0.1).
    """

    name = "jacobian_transpose"
    gain = 800.0  # (rad/s) per m^2: J is ~0.1-0.2 m, so a 5 cm error already saturates max_rate
    max_rate = 6.0  # rad/s
    elbow = 60.0  # rad/s of elbow fold per m of radial error
    kv = 0.1  # action per rad/s of rate error; 200 * kv * dt = 0.4 < 1, so no overshoot
    noise = 0.0  # std of Gaussian action noise

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def aim(self, obs: np.ndarray) -> np.ndarray:
        """Where the spring pulls the fingertip now: the target."""
        return obs[4:6].copy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        q, dq = _angles(obs), obs[6:8]
        aim, tip = self.aim(obs), _tip(obs)
        dq_want = _jacobian(q).T @ (self.gain * (aim - tip))
        fold = 1.0 if q[1] >= 0.0 else -1.0
        if abs(q[1]) > ELBOW_SOFT_LIMIT and dq_want[1] * fold > 0.0:
            dq_want[1] = 0.0  # J^T would press the folded elbow into its stop and stall there
        # A force along the arm's own line (stretched or folded) has no lever, so J^T ignores it.
        # The tip's distance from the base depends on q2 alone: bend or unbend the elbow by that error.
        dq_want[1] += self.elbow * (float(np.linalg.norm(tip)) - float(np.linalg.norm(aim))) * fold
        rate = float(np.linalg.norm(dq_want))
        if rate > self.max_rate:
            dq_want *= self.max_rate / rate
        u = self.kv * (dq_want - dq)
        if self.noise:
            u = u + self.rng.normal(0.0, self.noise, size=2)
        return np.clip(u, -1.0, 1.0).astype(np.float32)


class Reckless(_JacobianTranspose):
    """Pulled straight at the target, with action noise. It ignores the disc, so on the
    counter-clockwise side it swings the stretched arm right through it."""

    name = "reckless"
    max_rate = 6.0
    noise = 0.03


class Cautious(_JacobianTranspose):
    """The same controller with a lower rate cap, routed round the disc through a moving via-point.

    While the straight segment tip->target passes within ``clear`` of the disc centre, the
    controller aims at a point on a circle of radius ``orbit`` round the disc, ``lead``
    beyond the tangent point from the tip. It goes round the way that stays within the
    arm's reach (here: inside, between disc and base), and if both ways do, the shorter one.
    The side is kept until the path has cleared by ``hysteresis`` more, so the controller
    does not dither when the target sits right behind the disc. Within ``buffer`` of the
    disc's edge the aim is pushed outwards as well (see ``aim``).
    """

    name = "cautious"
    max_rate = 5.0  # slower than Reckless's 6 rad/s
    clear = KEEPOUT_RADIUS + 0.015  # m, segment clearance that counts as "misses the disc"
    orbit = KEEPOUT_RADIUS + 0.04  # m, radius of the via-point circle
    lead = math.radians(35.0)
    hysteresis = 0.01  # m
    buffer = TARGET_MARGIN  # m from the disc edge where the push starts (never at a target)
    push = 2.0  # m of aim shift per m inside the buffer
    reach = (0.03, LINK1 + LINK2 - 0.01)  # m, fingertip radii a via-point may use

    def reset(self, rng: np.random.Generator) -> None:
        super().reset(rng)
        self.side = 0.0  # +1 counter-clockwise round the disc, -1 clockwise, 0 not routing

    def _arc_excess(self, start: float, sweep: float) -> float:
        """How far (m) the via-point circle leaves the reachable annulus along an arc."""
        excess = 0.0
        for a in np.linspace(start, start + sweep, 13)[1:]:
            r = float(np.linalg.norm(KEEPOUT_CENTER + self.orbit * np.array([math.cos(a), math.sin(a)])))
            excess = max(excess, self.reach[0] - r, r - self.reach[1])
        return excess

    def _choose_side(self, a_tip: float, a_goal: float) -> float:
        """The way round that stays reachable; if both do, the shorter."""
        ccw = (a_goal - a_tip) % (2 * math.pi)
        options = [
            (self._arc_excess(a_tip, ccw), ccw, 1.0),
            (self._arc_excess(a_tip, ccw - 2 * math.pi), 2 * math.pi - ccw, -1.0),
        ]
        return min(options)[2]

    def aim(self, obs: np.ndarray) -> np.ndarray:
        """The route point, pushed away from the disc when the fingertip comes close to it.

        The push is there because J^T does not move the tip in straight lines: on the
        way to a point that looks clear, the path can still bulge into the disc.
        """
        p = _tip(obs)
        rel = p - KEEPOUT_CENTER
        gap = keepout_distance(p)
        push = self.push * max(self.buffer - gap, 0.0) * rel / max(float(np.linalg.norm(rel)), 1e-9)
        return self._route(obs) + push

    def _route(self, obs: np.ndarray) -> np.ndarray:
        """The target if the straight path is clear, else the next via-point round the disc."""
        p, g = _tip(obs), obs[4:6].copy()
        if _segment_clearance(p, g) >= self.clear + (self.hysteresis if self.side else 0.0):
            self.side = 0.0
            return g
        rel = p - KEEPOUT_CENTER
        dist = float(np.linalg.norm(rel))
        a_tip = math.atan2(rel[1], rel[0])
        if not self.side:
            self.side = self._choose_side(a_tip, math.atan2(g[1] - KEEPOUT_CENTER[1], g[0] - KEEPOUT_CENTER[0]))
        a_via = a_tip + self.side * (math.acos(min(self.orbit / max(dist, 1e-9), 1.0)) + self.lead)
        return KEEPOUT_CENTER + self.orbit * np.array([math.cos(a_via), math.sin(a_via)])


class Random:
    """Temporally correlated random torques: each uniform random action is held for 2-6 steps."""

    name = "random"

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.held = np.zeros(2, dtype=np.float32)
        self.left = 0

    def reset(self, rng: np.random.Generator) -> None:
        self.rng, self.left = rng, 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.left <= 0:
            self.held = self.rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
            self.left = int(self.rng.integers(2, 7))
        self.left -= 1
        return self.held.copy()


BEHAVIORS: dict[str, type[Driver]] = {"reckless": Reckless, "cautious": Cautious, "random": Random}


# --- rollouts and the dataset -------------------------------------------------------------------


def episode_seed(seed: int, index: int) -> int:
    """Reset seed of episode ``index``: an independent stream for each (dataset seed, episode)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def plan_behaviors(weights: dict[str, float], episodes: int, seed: int) -> list[str]:
    """Exact counts by largest remainder, then shuffled, so the mixture holds at every dataset size."""
    unknown = set(weights) - set(BEHAVIORS)
    if unknown:
        raise ValueError(f"unknown behaviours {sorted(unknown)}; known: {sorted(BEHAVIORS)}")
    names = list(weights)
    share = np.array([weights[n] for n in names], dtype=np.float64)
    if share.size == 0 or share.min() < 0 or share.sum() <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
    share = share / share.sum() * episodes
    counts = np.floor(share).astype(int)
    for idx in np.argsort(-(share - counts), kind="stable")[: episodes - counts.sum()]:
        counts[idx] += 1
    plan = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    np.random.default_rng(seed).shuffle(plan)
    return plan


def rollout(env: gym.Env, driver: Driver, seed: int, rng: np.random.Generator) -> dict[str, Any]:
    """One episode: N+1 observations and costs (reset first), N actions, rewards and flags."""
    driver.reset(rng)
    obs, info = env.reset(seed=seed)
    observations, costs = [obs], [info["cost"]]
    actions, rewards, terms, truncs = [], [], [], []
    done = False
    while not done:
        action = driver.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        costs.append(info["cost"])
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        done = terminated or truncated
    return {
        "seed": seed,
        "observations": np.asarray(observations, dtype=np.float64),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float64),
        "terminations": np.asarray(terms, dtype=bool),
        "truncations": np.asarray(truncs, dtype=bool),
        "costs": np.asarray(costs, dtype=np.float64),
    }


def collect(dataset_id: str, episodes: int, weights: dict[str, float], seed: int = 0) -> str:
    """Roll the drivers out and write a local Minari dataset under $MINARI_DATASETS_PATH; return its path.

    Each episode's infos hold N+1 entries, reset info first: ``cost`` (float64; the cost
    of transition t is ``infos['cost'][t + 1]``) and ``behavior`` (int64 index into
    ``BEHAVIORS``' order). An existing dataset id is refused, not overwritten.
    """
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.storage import get_dataset_path

    path = str(get_dataset_path(dataset_id))  # honours MINARI_DATASETS_PATH, as minari does
    if os.path.exists(path):
        raise FileExistsError(
            f"Minari dataset {dataset_id!r} already exists at {path}; refusing to overwrite it. "
            "Delete it first (minari.delete_dataset) or choose a new id, e.g. bump its -vN suffix."
        )
    names = list(BEHAVIORS)
    plan = plan_behaviors(weights, episodes, seed)
    env = gym.make(ENV_ID)
    buffers = []
    for index, name in enumerate(plan):
        ep = rollout(env, BEHAVIORS[name](), episode_seed(seed, index), np.random.default_rng([seed, index, 1]))
        code = np.full(len(ep["costs"]), names.index(name), dtype=np.int64)
        buffers.append(
            EpisodeBuffer(
                id=index,
                seed=ep["seed"],
                observations=ep["observations"],
                actions=ep["actions"],
                rewards=ep["rewards"],
                terminations=ep["terminations"],
                truncations=ep["truncations"],
                infos={"cost": ep["costs"], "behavior": code},
            )
        )
    env.close()
    mixture = ", ".join(f"{k} {v:g}" for k, v in weights.items())
    spec: EnvSpec = gym.spec(ENV_NAME)  # gym.spec() rejects the "module:" prefix; minari takes the spec
    try:
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=spec,
            eval_env=spec,
            algorithm_name=f"scripted mixture: {mixture}",
            author="keepout_reacher example",
            author_email="n/a",
            code_permalink="docs/byo/keepout_reacher.py",
            description=(
                f"Reacher-v5 with a keep-out disc (centre {KEEPOUT_CENTER.tolist()}, radius {KEEPOUT_RADIUS}), "
                f"{MAX_EPISODE_STEPS} steps; scripted mixture ({mixture}), seed {seed}, {episodes} episodes. "
                "Infos (N+1 entries, reset first): cost (1.0 while the fingertip is inside the disc), "
                "behavior (" + ", ".join(f"{i}={n}" for i, n in enumerate(names)) + "). "
                "Recovering the env needs keepout_reacher importable (docs/byo on PYTHONPATH)."
            ),
        )
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # it did not exist before: leave no half dataset
        raise
    return path


def evaluate(name: str, episodes: int = 50) -> dict[str, float]:
    """One driver over reset seeds 0..episodes-1 (driver noise seeded per episode)."""
    env = gym.make(ENV_ID)
    rets, costs, dists, reach = [], [], [], []
    for i in range(episodes):
        ep = rollout(env, BEHAVIORS[name](), i, np.random.default_rng([i, 1]))
        rets.append(ep["rewards"].sum())
        costs.append(ep["costs"][1:].sum())
        gap = np.linalg.norm(ep["observations"][1:, 8:10], axis=1)
        dists.append(gap[-1])
        reach.append(int(np.argmax(gap < 0.02)) + 1 if (gap < 0.02).any() else len(gap))
    env.close()
    costs_a = np.asarray(costs)
    return {
        "return": float(np.mean(rets)),
        "cost": float(costs_a.mean()),
        "any_cost": float((costs_a > 0).mean()),
        "final_dist": float(np.mean(dists)),
        "reach_steps": float(np.median(reach)),
    }


def step_rate(steps: int = 5000, env_id: str = ENV_ID) -> float:
    """Raw env steps per second under uniform random actions (resets included)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


if __name__ == "__main__":
    print(f"{ENV_ID}: disc centre {KEEPOUT_CENTER.tolist()} r={KEEPOUT_RADIUS}, {MAX_EPISODE_STEPS} steps")
    print(f"{'driver':<10}{'return':>9}{'ep cost':>9}{'any cost':>10}{'final dist':>12}{'reach (med)':>13}")
    for behavior in BEHAVIORS:
        s = evaluate(behavior)
        print(
            f"{behavior:<10}{s['return']:>9.2f}{s['cost']:>9.2f}{s['any_cost']:>10.0%}"
            f"{s['final_dist']:>12.4f}{s['reach_steps']:>13.0f}"
        )
    print(f"step rate (random actions): {step_rate():.0f} steps/s")
