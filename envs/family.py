"""Shared plumbing of the built-in task families.

A built-in family knows its single env class and its native batched vector env
class; ``make_vector_env`` returns the native env by default, or gymnasium's
Sync/Async vector env of single envs (same trajectories, slower) on request.
"""

from __future__ import annotations

import functools
import inspect

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit

from envs.adapter import TaskVectorWrapper, make_task_vector_env
from envs.base import VECTORIZATIONS, Task, TaskVectorEnv, check_max_episode_steps


def check_range(low: float, high: float, what: str, *, min_low: float | None = None) -> None:
    """One-line ValueError unless ``min_low <= low <= high`` (finite numbers)."""
    if (
        not (np.isfinite(low) and np.isfinite(high))
        or low > high
        or (min_low is not None and low < min_low)
    ):
        allowed = f"{min_low} <= low <= high" if min_low is not None else "low <= high"
        raise ValueError(f"{what} range must satisfy {allowed}, got low={low}, high={high}")


def sample_velocities(rng: np.random.Generator, n: int, low: float, high: float) -> list[Task]:
    """``n`` goal-velocity tasks, uniform in [low, high]."""
    return [{"velocity": float(v)} for v in rng.uniform(low, high, size=n)]


def sample_directions(rng: np.random.Generator, n: int) -> list[Task]:
    """``n`` direction tasks, +1 or -1 with probability 1/2."""
    return [{"direction": float(d)} for d in rng.choice([-1.0, 1.0], size=n)]


def _keyword_arguments(cls) -> set[str]:
    """Named arguments of ``cls.__init__`` (none for None)."""
    if cls is None:
        return set()
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.name not in ("self", "task")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class BuiltinTaskFamily:
    """Base of the built-in families (see ``envs.base.TaskFamily``).

    Subclasses set ``name``, ``env_cls``, ``vector_env_cls``,
    ``default_max_episode_steps`` and implement ``sample_tasks``; those with a
    device-resident env also set ``torch_vector_env_cls``.

    Args:
        max_episode_steps: horizon H (None: the family default).
        vectorization: default for ``make_vector_env``: ``"native"`` (batched
            arrays), ``"sync"`` or ``"async"`` (gymnasium vector env of single envs),
            ``"torch"`` (batched tensors on the policy's device, where the family has it).
        native_kwargs: extra arguments of the native vector env only
            (e.g. ``num_threads``).
        env_kwargs: arguments of both the single and the native env
            (e.g. ``ctrl_cost_weight``).
    """

    name: str
    env_cls: type[gym.Env]
    vector_env_cls: type[TaskVectorEnv]
    default_max_episode_steps: int
    torch_vector_env_cls: type | None = None

    def __init__(
        self,
        *,
        max_episode_steps: int | None = None,
        vectorization: str = "native",
        native_kwargs: dict | None = None,
        **env_kwargs,
    ):
        self._check_vectorization(vectorization)
        check_max_episode_steps(max_episode_steps)
        self.max_episode_steps = max_episode_steps or self.default_max_episode_steps
        self.vectorization = vectorization
        self.native_kwargs = dict(native_kwargs or {})
        self.env_kwargs = env_kwargs
        self._check_env_kwargs()

    def _check_vectorization(self, vectorization: str) -> None:
        if vectorization not in VECTORIZATIONS:
            raise ValueError(
                f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}"
            )
        if vectorization == "torch" and self.torch_vector_env_cls is None:
            raise ValueError(f"{self.name} has no torch (device-resident) vector env; use "
                             "vectorization 'native'")

    def _check_env_kwargs(self) -> None:
        """Build one env now, so that a wrong argument is named before any run starts."""
        try:
            self.env_cls(None, **self.env_kwargs).close()
        except TypeError as err:
            accepted = sorted(_keyword_arguments(self.env_cls)
                              | _keyword_arguments(getattr(self.env_cls, "rules_cls", None)))
            raise TypeError(f"{self.name}: {err}; it accepts {', '.join(accepted)}") from None

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        raise NotImplementedError

    def make_env(self, task: Task | None = None) -> gym.Env:
        """One single env with the time limit (None: the env's default task)."""
        return TimeLimit(self.env_cls(task, **self.env_kwargs), self.max_episode_steps)

    def make_vector_env(
        self, tasks: list[Task], episodes_per_task: int, *, vectorization: str | None = None
    ) -> TaskVectorEnv | TaskVectorWrapper:
        """T*E sub-envs, task-major; ``vectorization`` overrides the family default."""
        vectorization = vectorization or self.vectorization
        self._check_vectorization(vectorization)
        if vectorization == "torch":
            return self.torch_vector_env_cls(
                tasks, episodes_per_task, max_episode_steps=self.max_episode_steps,
                **self.env_kwargs)
        if vectorization == "native":
            return self.vector_env_cls(
                tasks,
                episodes_per_task,
                max_episode_steps=self.max_episode_steps,
                **self.env_kwargs,
                **self.native_kwargs,
            )
        return make_task_vector_env(
            functools.partial(self.env_cls, None, **self.env_kwargs),
            tasks,
            episodes_per_task,
            max_episode_steps=self.max_episode_steps,
            vectorization=vectorization,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_episode_steps={self.max_episode_steps})"
