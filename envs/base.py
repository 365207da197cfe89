"""Task families and the task-major vector env they build.

A *task* is a plain dict, e.g. ``{"velocity": 1.3}``, ``{"direction": -1.0}`` or
``{"goal": np.array([x, y])}``. A *task family* samples tasks and builds one
gymnasium ``VectorEnv`` that runs T tasks x E episodes at once.

Vector env convention (native batched envs here and the Sync/Async adapter in
``envs.adapter`` alike):

- ``num_envs = T * E``, task-major: sub-env ``i = t * E + e`` runs task ``t``;
- attributes ``tasks``, ``num_tasks``, ``episodes_per_task``, ``max_episode_steps``
  and ``set_tasks(tasks)`` to swap tasks (same T) without rebuilding;
- standard gymnasium 1.x API: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``
  exactly like ``SyncVectorEnv``; ``step(actions)`` takes ``(T*E, act_dim)``;
  autoreset mode NEXT_STEP; infos are a dict of ``(T*E,)`` arrays (reward terms).

The native envs also take ``reset(options={"hold_ended": True})``: until the next
reset, a sub-env whose episode ended is held instead of autoreset. It is not
simulated, and returns its last observation, reward 0, zero infos and the flags
it ended with. A sampler that runs every episode once (``metarl.rl.sampler``)
uses it; they say so with ``metadata["hold_ended"]``. Why: an Ant episode that
falls early would otherwise run a discarded episode until the horizon (half of
all Ant steps at the initial policy).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium.utils.seeding import np_random
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

Task = dict[str, Any]

# "torch": device tensors, for families that have such an env (Navigation2D).
VECTORIZATIONS = ("native", "sync", "async", "processes", "torch")


@runtime_checkable
class TaskFamily(Protocol):
    """What training needs from a family of tasks.

    Attributes:
        name: short name, e.g. ``"HalfCheetahVel"``.
        max_episode_steps: horizon H; episodes are truncated after H steps.

    A family whose held-out tasks are not fresh draws of the same distribution adds
    ``held_out() -> TaskFamily`` (Meta-World's test split): evaluation runs on it.
    """

    name: str
    max_episode_steps: int | None

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks drawn with ``rng`` (the only source of randomness)."""
        ...

    def make_env(self, task: Task | None = None) -> gym.Env:
        """One single env (time limit included) running ``task`` (None: a default task)."""
        ...

    def make_vector_env(self, tasks: list[Task], episodes_per_task: int) -> VectorEnv:
        """A vector env of ``len(tasks) * episodes_per_task`` sub-envs, task-major."""
        ...


def check_layout(
    tasks: list[Task] | None, episodes_per_task: int, num_envs: int | None, default_task: Task
) -> tuple[list[Task], int]:
    """Resolve ``(tasks, episodes_per_task)`` from the constructor arguments.

    ``gymnasium.make_vec`` passes only ``num_envs``: then one (default) task runs
    ``num_envs`` episodes. With ``tasks`` given, ``num_envs`` (if any) must match.
    """
    if tasks is None:
        tasks = [default_task]
        if num_envs is not None:
            episodes_per_task = num_envs
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, dict) for t in tasks):
        raise ValueError(f"tasks must be a non-empty list of dicts, got {tasks!r:.80}")
    if not isinstance(episodes_per_task, (int, np.integer)) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be an int >= 1, got {episodes_per_task!r}")
    if num_envs is not None and num_envs != len(tasks) * episodes_per_task:
        raise ValueError(
            f"num_envs={num_envs} must equal len(tasks) * episodes_per_task "
            f"= {len(tasks)} * {episodes_per_task}"
        )
    return tasks, int(episodes_per_task)


def check_max_episode_steps(max_episode_steps: int | None) -> None:
    """One-line ValueError unless the horizon is None or at least 1."""
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")


def check_num_tasks(tasks: list[Task], num_tasks: int) -> list[Task]:
    """``tasks`` as a list, or a one-line ValueError unless there are ``num_tasks`` of them."""
    tasks = list(tasks)
    if len(tasks) != num_tasks:
        raise ValueError(f"set_tasks needs {num_tasks} tasks (the env was built for "
                         f"{num_tasks}), got {len(tasks)}")
    return tasks


def check_task_keys(task: Task, keys: tuple[str, ...], family: str) -> None:
    """One-line ValueError when a task dict lacks a key the family needs."""
    if not isinstance(task, dict) or any(k not in task for k in keys):
        got = sorted(task) if isinstance(task, dict) else type(task).__name__
        raise ValueError(f"{family} tasks are dicts with keys {list(keys)}, got {got}")


class TaskVectorEnv(VectorEnv):
    """Base of the native batched envs: T tasks x E episodes, stepped as arrays.

    Subclasses set the spaces and implement four hooks on whole batches:
    ``_check_task(task)``, ``_set_task_arrays(tasks)`` (tasks repeated to (N, ...)),
    ``_reset_envs(idx) -> obs (len(idx), obs_dim)`` drawing initial-state noise from
    ``self._rngs[i]`` exactly as the single env draws from ``np_random``, and
    ``_step_envs(actions (N, act_dim), active) -> (obs, reward, terminated, info)``
    for all N, where only the sub-envs ``active`` (indices, or None: all) need
    simulating (the others' outputs are replaced; see ``hold_ended``).

    This class does the bookkeeping shared by all of them: per-sub-env generators
    seeded like ``SyncVectorEnv`` seeds its envs, the time limit, and NEXT_STEP
    autoreset (a sub-env that ended at step t returns its reset observation with
    reward 0 at step t+1, ignoring that step's action).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "hold_ended": True}

    def __init__(
        self,
        tasks: list[Task],
        episodes_per_task: int,
        max_episode_steps: int | None,
        single_observation_space: gym.spaces.Box,
        single_action_space: gym.spaces.Box,
    ):
        check_max_episode_steps(max_episode_steps)
        self.num_tasks = len(tasks)
        self.episodes_per_task = episodes_per_task
        self.num_envs = self.num_tasks * episodes_per_task
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._hold_ended = False
        self._ended_terminated = np.zeros(self.num_envs, dtype=bool)
        self._ended_truncated = np.zeros(self.num_envs, dtype=bool)
        self._last_obs = np.zeros(self.observation_space.shape, single_observation_space.dtype)
        self.tasks: list[Task] = []
        self.set_tasks(tasks)

    def set_tasks(self, tasks: list[Task]) -> None:
        """Run ``tasks`` from now on (same number of tasks); call ``reset`` next."""
        tasks = check_num_tasks(tasks, self.num_tasks)
        for task in tasks:
            self._check_task(task)
        self.tasks = tasks
        self._set_task_arrays(tasks)

    def repeat_tasks(self, array: np.ndarray) -> np.ndarray:
        """(T, ...) -> (T*E, ...) in task-major order."""
        return np.repeat(array, self.episodes_per_task, axis=0)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset sub-envs; ``options={"reset_mask": bool (N,)}`` resets only some,
        ``{"hold_ended": True}`` holds ended episodes until the next reset.

        Returns:
            obs (N, obs_dim) and an info dict (empty: reset has no reward terms).
        """
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
        if len(seeds) != n:
            raise ValueError(f"seed list must have num_envs={n} entries, got {len(seeds)}")
        mask = np.ones(n, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
        idx = np.flatnonzero(mask)
        for i in idx:
            # Same rule as gymnasium.Env.reset: a seed replaces the generator; no
            # seed keeps the existing one (created unseeded on first use).
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i] = np_random(seeds[i])[0]
        obs = self._reset_envs(idx)
        self._elapsed[idx] = 0
        self._autoreset[idx] = False
        self._ended_terminated[idx] = False
        self._ended_truncated[idx] = False
        self._hold_ended = bool((options or {}).get("hold_ended", False))
        self._last_obs[idx] = obs
        return self._last_obs.copy(), {}

    def step(self, actions: np.ndarray):
        """Step all sub-envs.

        Args:
            actions: (N, act_dim).

        Returns:
            obs (N, obs_dim), reward (N,) float64, terminated (N,) bool,
            truncated (N,) bool, info dict of (N,) arrays.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {self.action_space.shape}, got {actions.shape}"
            )
        if self._hold_ended:
            return self._step_holding_ended(actions)
        # Why step everything, then reset the sub-envs that ended last step: one
        # vectorised physics call; the reset overwrites the whole state anyway.
        obs, reward, terminated, info = self._step_envs(actions, None)
        self._elapsed += 1
        truncated = self._truncated()
        if self._autoreset.any():
            idx = np.flatnonzero(self._autoreset)
            obs[idx] = self._reset_envs(idx)
            reward[idx] = 0.0
            terminated[idx] = False
            truncated[idx] = False
            for value in info.values():
                value[idx] = 0
            self._elapsed[idx] = 0
        self._autoreset = terminated | truncated
        self._last_obs = obs.copy()
        return obs, reward, terminated, truncated, info

    def _truncated(self) -> np.ndarray:
        if self.max_episode_steps is None:
            return np.zeros(self.num_envs, dtype=bool)
        return self._elapsed >= self.max_episode_steps

    def _step_holding_ended(self, actions: np.ndarray):
        held = self._ended_terminated | self._ended_truncated
        obs, reward, terminated, info = self._step_envs(actions, np.flatnonzero(~held))
        self._elapsed[~held] += 1
        truncated = self._truncated()
        obs[held] = self._last_obs[held]
        reward[held] = 0.0
        for value in info.values():
            value[held] = 0
        terminated[held] = self._ended_terminated[held]
        truncated[held] = self._ended_truncated[held]
        self._ended_terminated, self._ended_truncated = terminated.copy(), truncated.copy()
        self._last_obs = obs.copy()
        return obs, reward, terminated, truncated, info

    # Hooks for subclasses --------------------------------------------------
    def _check_task(self, task: Task) -> None:
        raise NotImplementedError

    def _set_task_arrays(self, tasks: list[Task]) -> None:
        raise NotImplementedError

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _step_envs(self, actions: np.ndarray, active: np.ndarray | None):
        raise NotImplementedError
