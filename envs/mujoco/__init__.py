"""MuJoCo locomotion task families on Gymnasium's models (HalfCheetah, Ant)."""

from envs.mujoco.ant import AntDir, AntDirFamily, AntGoal, AntGoalFamily, AntVel, AntVelFamily
from envs.mujoco.half_cheetah import (
    HalfCheetahDir,
    HalfCheetahDirFamily,
    HalfCheetahVel,
    HalfCheetahVelFamily,
)

__all__ = [
    "AntDir",
    "AntDirFamily",
    "AntGoal",
    "AntGoalFamily",
    "AntVel",
    "AntVelFamily",
    "HalfCheetahDir",
    "HalfCheetahDirFamily",
    "HalfCheetahVel",
    "HalfCheetahVelFamily",
]
