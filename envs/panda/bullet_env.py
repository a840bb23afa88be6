"""PandaReach in PyBullet (`safecritic/PandaReach-v0`).

PyBullet loads the shared URDF (envs/panda/urdf.py) with its inertias as written (by
default it would recompute them from the collision meshes, and the twins would differ)
and with self-collision off, as in MuJoCo. The joints' own velocity motors are switched
off: the servo in envs/panda/control.py drives them with torques.
"""

from __future__ import annotations

import numpy as np

from safecritic.envs.bullet import direct_client, pybullet
from safecritic.envs.panda.base import PandaReachEnv
from safecritic.envs.panda.task import PandaLayout, PandaReachParams
from safecritic.envs.panda.urdf import EE_LINK, urdf_file


ARM = list(range(7))  # joint indices of panda_joint1..7 in the URDF's order
EE_INDEX = 11  # link index of panda_grasptarget (checked at load)


class BulletArm:
    """The arm, table and obstacle in one DIRECT client each."""

    # PyBullet never frees a collision shape once a body used it (removeCollisionShape refuses,
    # ~3.5 kB per reset), and a new obstacle size needs a new shape: rebuild the world this often.
    REBUILD_EVERY = 500

    def __init__(self, params: PandaReachParams) -> None:
        self.params = params
        self.client = direct_client()
        self._zeros = [0.0] * len(ARM)
        self._scales = (1.0, 1.0)
        self._build()

    def _build(self) -> None:
        """The world without the obstacle: robot and table (again after a rebuild)."""
        c, p = self.client, self.params
        c.resetSimulation()
        c.setGravity(0, 0, -9.81)
        c.setTimeStep(p.control_period / p.substeps)
        self.robot = c.loadURDF(urdf_file(), useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE)
        if c.getJointInfo(self.robot, EE_INDEX)[12].decode() != EE_LINK:
            raise RuntimeError(f"link {EE_INDEX} of the Panda URDF is not {EE_LINK}")
        links = range(-1, c.getNumJoints(self.robot))
        for link in links:
            c.changeDynamics(self.robot, link, linearDamping=0.0, angularDamping=0.0)
        c.setJointMotorControlArray(self.robot, ARM, pybullet.VELOCITY_CONTROL, forces=[0.0] * len(ARM))
        self._nominal = {link: c.getDynamicsInfo(self.robot, link)[:3:2] for link in links if link >= 0}
        self._table = self._box(p.table_centre, p.table_half)
        self._obstacle: int | None = None
        self._resets = 0
        self.set_dynamics(*self._scales)

    def _box(self, centre, half) -> int:
        """A static box."""
        shape = self.client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[float(h) for h in half])
        return self.client.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=shape,
                                           basePosition=[float(x) for x in centre])

    def reset(self, q: np.ndarray, layout: PandaLayout) -> None:
        if self._resets >= self.REBUILD_EVERY:
            self._build()
        self._resets += 1
        c = self.client
        if self._obstacle is not None:
            c.removeBody(self._obstacle)
        self._obstacle = self._box(layout.obstacle_centre, layout.obstacle_half)
        for joint in ARM:
            c.resetJointState(self.robot, joint, targetValue=float(q[joint]), targetVelocity=0.0)

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = self.client
        states = c.getJointStates(self.robot, ARM)
        self._q = [s[0] for s in states]
        self._dq = [s[1] for s in states]
        bias = c.calculateInverseDynamics(self.robot, self._q, self._dq, self._zeros)
        mass = c.calculateMassMatrix(self.robot, self._q)
        return np.array(self._q), np.array(self._dq), np.array(bias), np.array(mass)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        state = self.client.getLinkState(self.robot, EE_INDEX, computeForwardKinematics=True)
        rotation = np.array(self.client.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        return np.array(state[4]), rotation

    def jacobian(self) -> np.ndarray:
        # The point is given in the link's centre-of-mass frame; panda_grasptarget's is its link frame.
        linear, angular = self.client.calculateJacobian(self.robot, EE_INDEX, [0.0, 0.0, 0.0], self._q, self._dq,
                                                        self._zeros)
        return np.vstack([np.array(linear), np.array(angular)])

    def actuate(self, torque: np.ndarray) -> None:
        self.client.setJointMotorControlArray(self.robot, ARM, pybullet.TORQUE_CONTROL, forces=[float(t) for t in torque])
        self.client.stepSimulation()

    def touching(self) -> bool:
        c = self.client
        c.performCollisionDetection()  # contacts at the state after the step, as MuJoCo reports them
        for body in (self._obstacle, self._table):
            for point in c.getContactPoints(bodyA=self.robot, bodyB=body):
                if point[3] >= 0 and point[8] <= 0.0:  # a moving link (the base is -1), touching
                    return True
        return False

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None:
        c = self.client
        self._scales = (mass_scale, damping_scale)
        for link, (mass, inertia) in self._nominal.items():
            c.changeDynamics(self.robot, link, mass=mass * mass_scale,
                             localInertiaDiagonal=[float(i) * mass_scale for i in inertia])
        for joint in ARM:
            c.changeDynamics(self.robot, joint, jointDamping=self.params.joint_damping * damping_scale)

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None


class PandaReachBulletEnv(PandaReachEnv):
    engine = "pybullet"

    def _make_sim(self) -> BulletArm:
        return BulletArm(self.params)
