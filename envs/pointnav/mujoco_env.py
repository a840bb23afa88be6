"""PointNav in MuJoCo (`safecritic/PointNav-v0`)."""

from __future__ import annotations

from importlib import resources

import mujoco
import numpy as np

from safecritic.envs.pointnav.base import PointNavEnv
from safecritic.envs.pointnav.task import PointNavParams


class MujocoPointMass:
    """Point mass on two slide joints; the MJCF ships in safecritic/envs/assets."""

    def __init__(self, params: PointNavParams) -> None:
        xml = resources.files("safecritic.envs").joinpath("assets/pointnav.xml").read_text()
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.params = params
        self.model.opt.timestep = params.control_period / params.substeps
        self.model.actuator_gear[:, 0] = params.force_max
        self.model.jnt_range[:] = [-params.wall, params.wall]
        self._agent = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "agent")
        self.set_dynamics(1.0, 1.0)

    def reset(self, pos: np.ndarray) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = pos
        mujoco.mj_forward(self.model, self.data)

    def step(self, force: np.ndarray) -> None:
        # ctrl is in [-1, 1] and the actuator gear is force_max.
        self.data.ctrl[:] = force / self.params.force_max
        mujoco.mj_step(self.model, self.data, nstep=self.params.substeps)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.qpos.copy(), self.data.qvel.copy()

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None:
        self.model.body_mass[self._agent] = self.params.mass * mass_scale
        self.model.dof_damping[:] = self.params.damping * damping_scale
        # MuJoCo precomputes the mass matrix of "simple" dofs (dof_M0) at compile time;
        # without this the new mass would be silently ignored.
        mujoco.mj_setConst(self.model, self.data)

    def close(self) -> None:
        pass


class PointNavMujocoEnv(PointNavEnv):
    engine = "mujoco"

    def _make_sim(self) -> MujocoPointMass:
        return MujocoPointMass(self.params)
