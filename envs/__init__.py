"""Worlds and data: tasks in MuJoCo and PyBullet, costs, faults, behaviours, datasets."""
