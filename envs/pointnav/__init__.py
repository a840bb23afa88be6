"""PointNav: a point mass reaches a goal past circular hazards, in MuJoCo and PyBullet."""

from safecritic.envs.pointnav.task import Layout, PointNavParams

__all__ = ["Layout", "PointNavParams"]
