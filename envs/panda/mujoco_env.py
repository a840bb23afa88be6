"""PandaReach in MuJoCo (`safecritic/PandaReachMj-v0`).

MuJoCo compiles the shared URDF (envs/panda/urdf.py) through `MjSpec`, which then adds
what the URDF lacks: the end-effector site, the table, the obstacle, the target site and
one torque motor per arm joint. Fixed links fuse into their parents (link0 into the world,
hand and fingers into link7); the kinematics stay the URDF's.
"""

from __future__ import annotations

import mujoco
import numpy as np

from safecritic.envs.panda.base import PandaReachEnv
from safecritic.envs.panda.task import PandaLayout, PandaReachParams
from safecritic.envs.panda.urdf import ARM_JOINTS, EE_LINK, panda_model, urdf_text

# Contact filter (MuJoCo collides two geoms when contype & conaffinity match either way):
# robot geoms never collide with each other (self-contacts are not accidents), only with
# the scene; table and obstacle are both static and never collide with each other.
ROBOT = {"contype": 2, "conaffinity": 1}
SCENE = {"contype": 1, "conaffinity": 2}


def build_spec(p: PandaReachParams) -> mujoco.MjSpec:
    model = panda_model()
    spec = mujoco.MjSpec.from_string(urdf_text())
    spec.option.timestep = p.control_period / p.substeps
    for geom in spec.geoms:
        geom.contype, geom.conaffinity = ROBOT["contype"], ROBOT["conaffinity"]
    spec.body(EE_LINK).add_site(name="ee")
    world = spec.worldbody
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(p.table_centre), size=list(p.table_half),
                   **SCENE)
    # A mocap body of its own: moved through data.mocap_pos, and its single-geom bounding volume
    # is easy to resize (a geom of the world body sits in a bounding tree fixed at compile time).
    holder = world.add_body(name="obstacle", mocap=True, pos=[0.5, 0.0, 0.05])
    holder.add_geom(name="obstacle", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.05] * 3, **SCENE)
    world.add_site(name="target", size=[p.success_radius] * 3, rgba=[0, 1, 0, 0.5])
    for name, effort in zip(ARM_JOINTS, model.effort):
        spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                          ctrlrange=[-effort, effort], ctrllimited=True)  # a plain motor: ctrl = torque
    return spec


class MujocoArm:
    """The arm, table and obstacle in one MjModel; torques through the motors."""

    def __init__(self, params: PandaReachParams) -> None:
        self.params = params
        self.model = build_spec(params).compile()
        self.data = mujoco.MjData(self.model)
        name = lambda kind, n: mujoco.mj_name2id(self.model, kind, n)  # noqa: E731
        self._ee = name(mujoco.mjtObj.mjOBJ_SITE, "ee")
        self._target = name(mujoco.mjtObj.mjOBJ_SITE, "target")
        self._obstacle = name(mujoco.mjtObj.mjOBJ_GEOM, "obstacle")
        holder = self.model.geom_bodyid[self._obstacle]
        self._mocap, self._obstacle_bvh = self.model.body_mocapid[holder], self.model.body_bvhadr[holder]
        self._scene = {self._obstacle, name(mujoco.mjtObj.mjOBJ_GEOM, "table")}
        self._nominal = (self.model.body_mass.copy(), self.model.body_inertia.copy())
        self._jac = np.zeros((6, self.model.nv))
        self._mass = np.zeros((self.model.nv, self.model.nv))
        self._fresh = False  # mj_step1 has run at the current state
        self.set_dynamics(1.0, 1.0)

    def reset(self, q: np.ndarray, layout: PandaLayout) -> None:
        m = self.model
        half = np.asarray(layout.obstacle_half, dtype=np.float64)
        m.geom_size[self._obstacle] = half
        # Collision pruning reads bounds precomputed at compile time: resize them with the box.
        m.geom_rbound[self._obstacle] = float(np.linalg.norm(half))
        m.geom_aabb[self._obstacle] = m.bvh_aabb[self._obstacle_bvh] = np.concatenate([np.zeros(3), half])
        m.site_pos[self._target] = layout.target
        mujoco.mj_resetData(m, self.data)
        self.data.mocap_pos[self._mocap] = layout.obstacle_centre
        self.data.qpos[:] = q
        self._fresh = False

    def _refresh(self) -> None:
        # Position and velocity stages (kinematics, contacts, bias forces) at the current state;
        # mj_step2 then integrates with the torques set in between (MuJoCo's split step).
        if not self._fresh:
            mujoco.mj_step1(self.model, self.data)
            self._fresh = True

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._refresh()
        mujoco.mj_fullM(self.model, self.data, self._mass)
        return self.data.qpos.copy(), self.data.qvel.copy(), self.data.qfrc_bias.copy(), self._mass.copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self._ee].copy(), self.data.site_xmat[self._ee].reshape(3, 3).copy()

    def jacobian(self) -> np.ndarray:
        mujoco.mj_jacSite(self.model, self.data, self._jac[:3], self._jac[3:], self._ee)
        return self._jac.copy()

    def actuate(self, torque: np.ndarray) -> None:
        self._refresh()
        self.data.ctrl[:] = torque
        mujoco.mj_step2(self.model, self.data)
        self._fresh = False

    def touching(self) -> bool:
        self._refresh()
        n = self.data.ncon
        if n == 0:
            return False
        pairs = self.data.contact.geom[:n]
        bodies = self.model.geom_bodyid[pairs]
        scene = np.isin(pairs, list(self._scene))
        # A scene geom against a geom of a moving link (body 0 is the world, with link0 fused in).
        robot = (bodies > 0) & ~scene
        return bool(np.any((scene[:, 0] & robot[:, 1]) | (scene[:, 1] & robot[:, 0])))

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None:
        mass, inertia = self._nominal
        self.model.body_mass[:] = mass * mass_scale
        self.model.body_inertia[:] = inertia * mass_scale
        self.model.dof_damping[:] = self.params.joint_damping * damping_scale
        mujoco.mj_setConst(self.model, self.data)  # refresh the constants derived from the masses
        self._fresh = False

    def close(self) -> None:
        pass


class PandaReachMujocoEnv(PandaReachEnv):
    engine = "mujoco"

    def _make_sim(self) -> MujocoArm:
        return MujocoArm(self.params)
