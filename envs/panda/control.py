"""The arm's controller, engine-independent: Cartesian velocity -> joint velocity -> torque.

Both engines run exactly these two laws on their own measurements (Jacobian, joint
state, bias forces), so the twins differ only in their physics.

- `joint_velocity`: damped least squares on the 6 x 7 Jacobian. The three linear rows
  track the commanded end-effector velocity; the angular rows turn the gripper back to
  its start orientation; the remaining freedom (the elbow) is pulled to the start
  posture. Speeds are scaled to the joint speed limits and stopped short of the
  position limits.
- `servo_torque`: a joint impedance servo on a reference that integrates the commanded
  velocity, plus the bias (gravity, Coriolis) of the *nominal* model as feedforward.
  When the dynamics fault makes the arm heavier, the feedforward no longer matches and
  the arm sags and lags, as a real controller tuned on the nominal model would.
"""

from __future__ import annotations

import numpy as np

from safecritic.envs.panda.task import PandaReachParams
from safecritic.envs.panda.urdf import PandaModel


def orientation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (small-angle) that turns `current` towards `target` (world frame)."""
    e = target @ current.T
    return 0.5 * np.array([e[2, 1] - e[1, 2], e[0, 2] - e[2, 0], e[1, 0] - e[0, 1]])


def joint_velocity(
    ee_velocity: np.ndarray, jacobian: np.ndarray, rotation: np.ndarray, target_rotation: np.ndarray,
    q: np.ndarray, posture: np.ndarray, model: PandaModel, p: PandaReachParams,
) -> np.ndarray:
    """Joint velocities (7,) that move the end effector at `ee_velocity` (3,) m/s."""
    twist = np.concatenate([ee_velocity, p.orientation_gain * orientation_error(target_rotation, rotation)])
    gram = jacobian @ jacobian.T + p.dls_damping**2 * np.eye(6)
    pinv = jacobian.T @ np.linalg.inv(gram)
    dq = pinv @ twist + (np.eye(7) - pinv @ jacobian) @ (p.posture_gain * (posture - q))
    limit = p.speed_fraction * model.velocity
    dq = dq / max(1.0, float(np.max(np.abs(dq) / limit)))  # uniform scaling keeps the direction
    lo = (model.lower + p.limit_margin - q) / p.control_period
    hi = (model.upper - p.limit_margin - q) / p.control_period
    return np.clip(dq, np.minimum(lo, 0.0), np.maximum(hi, 0.0))


def servo_torque(
    q: np.ndarray, dq: np.ndarray, q_ref: np.ndarray, dq_ref: np.ndarray, bias: np.ndarray,
    feedforward: np.ndarray, mass: np.ndarray, dt: float, model: PandaModel, p: PandaReachParams,
) -> np.ndarray:
    """Joint torques (7,) of the servo tau = kp (q_ref - q) + kd (dq_ref - dq) + feedforward,
    within the URDF's effort limits.

    The servo's error is taken at the *end* of the physics step (stable PD, Tan et al. 2011):
    a real servo runs at ~1 kHz, and the same gains applied explicitly at the simulator's
    10 ms step are unstable on the arm's light modes (joints 1 and 3 turning against each
    other near q2 = 0). `bias` and `mass` are the simulated arm's own bias torques and
    mass matrix, used only to predict that next state; `feedforward` is the nominal model's.
    """
    kp, kd = np.asarray(p.kp), np.asarray(p.kd)
    rhs = kp * (q_ref - q - dt * dq) + kd * (dq_ref - dq) + feedforward - bias
    ddq = np.linalg.solve(mass + np.diag(dt * kd + dt * dt * kp), rhs)
    return np.clip(mass @ ddq + bias, -model.effort, model.effort)


def advance_reference(q_ref: np.ndarray, dq_ref: np.ndarray, q: np.ndarray, dt: float,
                      model: PandaModel, p: PandaReachParams) -> np.ndarray:
    """Integrate the reference one physics step, inside the limits and near the measured angle
    (anti-windup: a blocked joint does not store up a jump for later)."""
    ref = np.clip(q_ref + dq_ref * dt, q - p.ref_window, q + p.ref_window)
    return np.clip(ref, model.lower, model.upper)
