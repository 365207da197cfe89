"""Sinusoid regression tasks (MAML paper, section 5.1).

A task is a sine wave ``y = A sin(x - phase)``; amplitude, phase and the
input range are configurable (paper: A ~ U[0.1, 5], phase ~ U[0, pi],
x ~ U[-5, 5]).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sample_sinusoids(rng: np.random.Generator, num_tasks: int,
                     amplitude_range=(0.1, 5.0), phase_range=(0.0, np.pi)) -> np.ndarray:
    """(num_tasks, 2) array of [amplitude, phase] per task."""
    amplitude = rng.uniform(*amplitude_range, size=num_tasks)
    phase = rng.uniform(*phase_range, size=num_tasks)
    return np.stack([amplitude, phase], axis=1)


def sinusoid_points(rng: np.random.Generator, tasks: np.ndarray, num_points: int,
                    input_range=(-5.0, 5.0)) -> tuple[Tensor, Tensor]:
    """Random points of each task's sine: x, y each (T, num_points, 1) float32."""
    x = rng.uniform(*input_range, size=(len(tasks), num_points, 1))
    y = tasks[:, None, 0:1] * np.sin(x - tasks[:, None, 1:2])
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)


def sample_batch(rng: np.random.Generator, config, num_tasks: int):
    """A meta-batch: (support, query), each a pair x, y of (T, K, 1) tensors."""
    tasks = sample_sinusoids(rng, num_tasks, config.amplitude_range, config.phase_range)
    support = sinusoid_points(rng, tasks, config.shots, config.input_range)
    query = sinusoid_points(rng, tasks, config.query_shots, config.input_range)
    return support, query
