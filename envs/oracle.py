"""The oracle baseline of the MAML paper: the policy sees the task in its observation.

``OracleFamily(family)`` is the same family with every observation extended by
the task's parameters (``task_features``): the goal velocity, the direction,
the goal position. A policy trained on it needs no adaptation, which bounds
what adaptation can reach.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

from envs.base import Task


def task_features(task: Task) -> np.ndarray:
    """The task's numbers as one flat float32 vector, keys in sorted order."""
    return np.concatenate([np.ravel(np.asarray(task[k], dtype=np.float32))
                           for k in sorted(task)])


def extended_space(space: gym.spaces.Box, extra: int) -> gym.spaces.Box:
    low = np.concatenate([space.low.ravel(), np.full(extra, -np.inf)]).astype(np.float32)
    high = np.concatenate([space.high.ravel(), np.full(extra, np.inf)]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


class OracleEnv(gym.ObservationWrapper):
    """A single task env whose observation ends with its task's features."""

    def __init__(self, env: gym.Env, task: Task):
        super().__init__(env)
        self.features = task_features(task)
        self.observation_space = extended_space(env.observation_space, self.features.size)

    def observation(self, observation):
        return np.concatenate([np.ravel(observation), self.features]).astype(np.float32)


class OracleVectorEnv(VectorWrapper):
    """A task-major vector env (see ``envs.base``) with task features appended to obs."""

    def __init__(self, env):
        super().__init__(env)
        self.num_tasks, self.episodes_per_task = env.num_tasks, env.episodes_per_task
        self.max_episode_steps = env.max_episode_steps
        self._set_features(env.tasks)
        extra = self._features.shape[1]
        self.single_observation_space = extended_space(env.single_observation_space, extra)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              self.num_envs)

    @property
    def tasks(self) -> list[Task]:
        return self.env.tasks

    def _set_features(self, tasks: list[Task]) -> None:
        features = np.stack([task_features(t) for t in tasks])
        self._features = np.repeat(features, self.episodes_per_task, axis=0)  # (T*E, F)

    def set_tasks(self, tasks: list[Task]) -> None:
        self.env.set_tasks(tasks)
        self._set_features(tasks)

    def _extend(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs.reshape(self.num_envs, -1), self._features],
                              axis=1).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._extend(obs), info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return self._extend(obs), reward, terminated, truncated, info


class OracleFamily:
    """``family`` with the task in every observation (a ``TaskFamily`` itself)."""

    def __init__(self, family):
        self.family = family
        self.name = family.name
        self.max_episode_steps = family.max_episode_steps

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return self.family.sample_tasks(rng, n)

    def make_env(self, task: Task | None = None) -> gym.Env:
        if task is None:  # the default task's features: any task of the family has the shape
            task = self.family.sample_tasks(np.random.default_rng(0), 1)[0]
        env = self.family.make_env(task)
        return OracleEnv(env, task)

    def make_vector_env(self, tasks: list[Task], episodes_per_task: int) -> OracleVectorEnv:
        return OracleVectorEnv(self.family.make_vector_env(tasks, episodes_per_task))
