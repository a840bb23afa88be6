"""PointNav in PyBullet (`safecritic/PointNavBullet-v0`)."""

from __future__ import annotations

from importlib import resources

import numpy as np

from safecritic.envs.bullet import direct_client, pybullet
from safecritic.envs.pointnav.base import PointNavEnv
from safecritic.envs.pointnav.task import PointNavParams


class BulletPointMass:
    """Point mass on two prismatic joints of a fixed-base URDF, one DIRECT client each."""

    JOINTS = [0, 1]

    def __init__(self, params: PointNavParams) -> None:
        self.params = params
        self.client = direct_client()
        self.client.setGravity(0, 0, 0)
        self.client.setTimeStep(params.control_period / params.substeps)
        urdf = resources.files("safecritic.envs").joinpath("assets/pointnav_agent.urdf")
        with resources.as_file(urdf) as path:
            self.body = self.client.loadURDF(str(path), useFixedBase=True)
        # The default velocity motors would hold the joints still: switch them off.
        self.client.setJointMotorControlArray(self.body, self.JOINTS, pybullet.VELOCITY_CONTROL, forces=[0.0, 0.0])
        for joint in self.JOINTS:
            self.client.changeDynamics(
                self.body, joint, jointLowerLimit=-params.wall, jointUpperLimit=params.wall,
                linearDamping=0.0, angularDamping=0.0,
            )
        self.set_dynamics(1.0, 1.0)

    def reset(self, pos: np.ndarray) -> None:
        for joint in self.JOINTS:
            self.client.resetJointState(self.body, joint, targetValue=float(pos[joint]), targetVelocity=0.0)

    def step(self, force: np.ndarray) -> None:
        forces = [float(force[0]), float(force[1])]
        for _ in range(self.params.substeps):
            # Torque commands last one simulation step, so they are re-applied each substep.
            self.client.setJointMotorControlArray(self.body, self.JOINTS, pybullet.TORQUE_CONTROL, forces=forces)
            self.client.stepSimulation()

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self.body, self.JOINTS)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def set_dynamics(self, mass_scale: float, damping_scale: float) -> None:
        self.client.changeDynamics(self.body, 1, mass=self.params.mass * mass_scale)
        for joint in self.JOINTS:
            self.client.changeDynamics(self.body, joint, jointDamping=self.params.damping * damping_scale)

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client = None


class PointNavBulletEnv(PointNavEnv):
    engine = "pybullet"

    def _make_sim(self) -> BulletPointMass:
        return BulletPointMass(self.params)
