"""Any ``gymnasium.Env`` with ``set_task(task)`` as a task family.

A user writes an ordinary env with a ``set_task(task)`` method and a task
sampler; ``EnvTaskFamily`` wraps them::

    family = EnvTaskFamily(MyEnv, my_sample_tasks, name="MyTasks", max_episode_steps=100)
    env = family.make_vector_env(family.sample_tasks(rng, 8), episodes_per_task=10)

The vector env is gymnasium's ``SyncVectorEnv`` (or ``AsyncVectorEnv``) of
``T*E`` single envs in the task-major layout of ``envs.base``, wrapped by
``TaskVectorWrapper`` for the ``tasks`` / ``num_tasks`` / ``set_tasks`` API.
The built-in families use the same code for their ``vectorization="sync"``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper
from gymnasium.wrappers import TimeLimit

from envs.base import Task, check_max_episode_steps, check_num_tasks

ADAPTER_VECTORIZATIONS = ("sync", "async", "processes")


class _TaskSetter(gym.Wrapper):
    """Exposes the task as a settable attribute.

    Why: ``VectorEnv.set_attr(name, values)`` can send one value per sub-env (also
    to ``AsyncVectorEnv`` workers), but ``call`` sends the same arguments to all.
    """

    def __init__(self, env: gym.Env, task: Task | None):
        super().__init__(env)
        self._task = task

    @property
    def task(self) -> Task | None:
        return self._task

    @task.setter
    def task(self, task: Task) -> None:
        self.env.unwrapped.set_task(task)
        self._task = task

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        shape = self.observation_space.shape
        if shape is not None and np.shape(obs) != shape:  # else gymnasium fails deep inside
            raise ValueError(f"reset returned observations of shape {np.shape(obs)}, its "
                             f"observation_space says {shape}")
        return obs, info


def make_task_env(
    env_fn: Callable[[], gym.Env], task: Task | None, max_episode_steps: int | None
) -> gym.Env:
    """``env_fn()`` set to ``task`` (None: leave its default), with an optional time limit."""
    env = env_fn()
    if not callable(getattr(env.unwrapped, "set_task", None)):
        raise TypeError(
            f"{type(env.unwrapped).__name__} needs a set_task(task) method to be a task family"
        )
    if task is not None:
        env.unwrapped.set_task(task)
    if max_episode_steps is not None:
        env = TimeLimit(env, max_episode_steps)
    return _TaskSetter(env, task)


class TaskVectorWrapper(VectorWrapper):
    """Task-major attributes on a Sync/Async vector env of single task envs.

    Sub-env ``i = t * E + e`` runs ``tasks[t]``; ``set_tasks`` re-targets all
    sub-envs in place (same T). Everything else is the wrapped vector env.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        tasks: list[Task],
        episodes_per_task: int,
        max_episode_steps: int | None,
    ):
        super().__init__(env)
        self.num_tasks = len(tasks)
        self.episodes_per_task = episodes_per_task
        self.max_episode_steps = max_episode_steps
        self.tasks = list(tasks)

    def set_tasks(self, tasks: list[Task]) -> None:
        """Run ``tasks`` from now on (same number of tasks); call ``reset`` next."""
        tasks = check_num_tasks(tasks, self.num_tasks)
        self.env.set_attr("task", [t for t in tasks for _ in range(self.episodes_per_task)])
        self.tasks = tasks


def make_task_vector_env(
    env_fn: Callable[[], gym.Env],
    tasks: list[Task],
    episodes_per_task: int,
    *,
    max_episode_steps: int | None = None,
    vectorization: str = "sync",
    workers: int = 2,
) -> TaskVectorWrapper:
    """Sync or Async vector env of ``len(tasks) * episodes_per_task`` envs from ``env_fn``.

    Args:
        env_fn: builds one env whose ``unwrapped`` has ``set_task(task)``.
        tasks: T task dicts.
        episodes_per_task: E, parallel episodes per task.
        max_episode_steps: time limit added to each env (None: none added).
        vectorization: ``"sync"`` (one process), ``"async"`` (one process per env) or
            ``"processes"`` (``workers`` processes, each a block of envs: ``envs.process_vector``).
        workers: processes of ``"processes"``.
    """
    if vectorization not in ADAPTER_VECTORIZATIONS:
        raise ValueError(
            f"vectorization must be one of {ADAPTER_VECTORIZATIONS}, got {vectorization!r}"
        )
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must be a non-empty list of dicts, got []")
    if not isinstance(episodes_per_task, (int, np.integer)) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be an int >= 1, got {episodes_per_task!r}")
    fns = [
        functools.partial(make_task_env, env_fn, task, max_episode_steps)
        for task in tasks
        for _ in range(episodes_per_task)
    ]
    if vectorization == "processes":
        from envs.process_vector import BlockVectorEnv

        env = BlockVectorEnv(fns, workers)
    else:
        cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
        env = cls(fns)
    return TaskVectorWrapper(env, tasks, int(episodes_per_task), max_episode_steps)


class EnvTaskFamily:
    """A task family from an env factory with ``set_task`` and a task sampler.

    Args:
        env_fn: class or zero-argument factory returning a ``gymnasium.Env`` whose
            ``unwrapped`` has ``set_task(task)``.
        sample_tasks: ``(rng: np.random.Generator, n: int) -> list[Task]``.
        name: family name (default: ``env_fn.__name__``).
        max_episode_steps: horizon H added as a ``TimeLimit`` (None: the env's own).
        vectorization: default for ``make_vector_env``: ``"sync"`` or ``"async"``.
    """

    def __init__(
        self,
        env_fn: Callable[[], gym.Env],
        sample_tasks: Callable[[np.random.Generator, int], list[Task]],
        *,
        name: str | None = None,
        max_episode_steps: int | None = None,
        vectorization: str = "sync",
    ):
        if vectorization not in ADAPTER_VECTORIZATIONS:
            raise ValueError(
                f"vectorization must be one of {ADAPTER_VECTORIZATIONS}, got {vectorization!r}"
            )
        check_max_episode_steps(max_episode_steps)
        self.env_fn = env_fn
        self._sample_tasks = sample_tasks
        self.name = name or getattr(env_fn, "__name__", type(env_fn).__name__)
        self.max_episode_steps = max_episode_steps
        self.vectorization = vectorization

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks from the user's sampler, checked to be a list of ``n`` dicts."""
        tasks = list(self._sample_tasks(rng, n))
        if len(tasks) != n or not all(isinstance(t, dict) for t in tasks):
            raise ValueError(
                f"{self.name}: sample_tasks(rng, {n}) must return {n} dicts, got {tasks!r:.80}"
            )
        return tasks

    def make_env(self, task: Task | None = None) -> gym.Env:
        """One env running ``task`` (None: the env's own default)."""
        return make_task_env(self.env_fn, task, self.max_episode_steps)

    def make_vector_env(
        self, tasks: list[Task], episodes_per_task: int, *, vectorization: str | None = None
    ) -> TaskVectorWrapper:
        """T*E envs, task-major; ``vectorization`` overrides the family default."""
        return make_task_vector_env(
            self.env_fn,
            tasks,
            episodes_per_task,
            max_episode_steps=self.max_episode_steps,
            vectorization=vectorization or self.vectorization,
        )
