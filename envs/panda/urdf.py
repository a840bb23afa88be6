"""The one Panda model both engines load, and its kinematics without any engine.

Both twins read the same text: pybullet_data's `franka_panda/panda.urdf` with the
collision mesh paths made absolute (MuJoCo cannot resolve `package://`), the visual
elements dropped (their meshes are not shipped, and nothing here renders) and the two
finger joints made fixed (the gripper stays closed, so it adds no degrees of freedom
that one engine would simulate differently from the other).

`forward` chains the URDF's joint origins in numpy. The reset sampler uses it to place
the obstacle on the start->target line *before* any engine exists, so both engines get
the same layout from the same seed.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
EE_LINK = "panda_grasptarget"  # between the fingertips, 0.105 m beyond the hand


def source_path() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"


@lru_cache(maxsize=1)
def urdf_text() -> str:
    """The shared model (see the module docstring)."""
    src = source_path()
    text = src.read_text()
    text = re.sub(r"<visual>.*?</visual>", "", text, flags=re.S)
    text = text.replace("package://", f"{src.parent}/")
    text = re.sub(r'(<joint name="panda_finger_joint\d") type="prismatic"', r'\1 type="fixed"', text)
    if text.count('type="revolute"') != len(ARM_JOINTS) or "package://" in text:
        raise RuntimeError(f"{src} is not the Panda URDF this task was written for (7 revolute joints)")
    return text


@lru_cache(maxsize=1)
def urdf_file() -> str:
    """The shared model as a file (PyBullet loads files only), named by its content.

    Written atomically, so parallel collection workers may race for it harmlessly."""
    text = urdf_text()
    path = Path(tempfile.gettempdir()) / f"safecritic-panda-{hashlib.sha256(text.encode()).hexdigest()[:16]}.urdf"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".urdf")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    return str(path)


def _vector(text: str | None, default: str = "0 0 0") -> np.ndarray:
    return np.array([float(v) for v in (text or default).split()])


def _rpy(r: float, p: float, y: float) -> np.ndarray:
    """URDF's fixed-axis roll-pitch-yaw: R = Rz(y) Ry(p) Rx(r)."""
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


@dataclass(frozen=True)
class _Joint:
    origin: np.ndarray  # 4x4, parent link frame -> joint frame
    axis: np.ndarray
    index: int | None  # position in the arm's q, None for a fixed joint


@dataclass(frozen=True)
class PandaModel:
    """What the task reads from the URDF: arm joint limits and the base-to-EE chain."""

    lower: np.ndarray  # (7,) rad
    upper: np.ndarray
    effort: np.ndarray  # (7,) N m
    velocity: np.ndarray  # (7,) rad/s
    chain: tuple[_Joint, ...]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (position (3,), rotation (3, 3)) in the base frame at joint angles q (7,)."""
        pose = np.eye(4)
        for joint in self.chain:
            pose = pose @ joint.origin
            if joint.index is not None:
                turn = np.eye(4)
                turn[:3, :3] = _axis_angle(joint.axis, float(q[joint.index]))
                pose = pose @ turn
        return pose[:3, 3].copy(), pose[:3, :3].copy()


@lru_cache(maxsize=1)
def panda_model() -> PandaModel:
    root = ET.fromstring(urdf_text())
    joints = {j.find("child").get("link"): j for j in root.findall("joint")}
    chain: list[_Joint] = []
    link = EE_LINK
    while link in joints:  # walk from the end effector back to the base
        joint = joints[link]
        origin = joint.find("origin")
        pose = np.eye(4)
        pose[:3, :3] = _rpy(*_vector(origin.get("rpy") if origin is not None else None))
        pose[:3, 3] = _vector(origin.get("xyz") if origin is not None else None)
        name = joint.get("name")
        index = ARM_JOINTS.index(name) if name in ARM_JOINTS else None
        axis = joint.find("axis")
        chain.append(_Joint(pose, _vector(axis.get("xyz") if axis is not None else None, "1 0 0"), index))
        link = joint.find("parent").get("link")
    limits = [root.find(f"joint[@name='{name}']/limit") for name in ARM_JOINTS]
    read = lambda key: np.array([float(lim.get(key)) for lim in limits])  # noqa: E731
    return PandaModel(read("lower"), read("upper"), read("effort"), read("velocity"), tuple(reversed(chain)))
