"""The two task distributions the MuJoCo locomotion families share.

A goal-velocity family (HalfCheetahVel, AntVel) and a direction family
(HalfCheetahDir, AntDir) differ only in their env classes and the velocity range;
subclasses set ``name``, ``env_cls``, ``vector_env_cls`` (and ``default_high``).
"""

from __future__ import annotations

import numpy as np

from envs.base import Task
from envs.family import check_range, sample_directions, sample_velocities
from envs.mujoco.base import MujocoTaskFamily


class VelocityFamily(MujocoTaskFamily):
    """Goal velocities uniform in ``[low, high]`` (high: the family's ``default_high``);
    see ``MujocoTaskFamily``."""

    default_high: float

    def __init__(self, low: float = 0.0, high: float | None = None, **kwargs):
        high = self.default_high if high is None else high
        check_range(low, high, f"{self.name} velocity", min_low=0.0)
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return sample_velocities(rng, n, self.low, self.high)


class DirectionFamily(MujocoTaskFamily):
    """Directions +1 / -1 with probability 1/2; see ``MujocoTaskFamily``."""

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return sample_directions(rng, n)
