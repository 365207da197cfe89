"""2D point navigation (MAML paper, section 5.2).

| | |
| --- | --- |
| state / obs | agent position (2,), float32; starts at the origin |
| action | (2,) in [-1, 1], scaled to a velocity of at most 0.1 per coordinate |
| reward | ``-||position - goal||_2`` after the move |
| termination | within 0.01 of the goal in both coordinates (a box, as the original code) |
| task | ``{"goal": np.array([x, y])}``, x, y uniform in [-0.5, 0.5] |
| horizon | 100 steps (``max_episode_steps``) |

Why actions are scaled rather than taken as raw velocities: the original MAML
code wrapped this env in rllab's ``normalize()``, so a unit-variance Gaussian
policy explores velocities of about 0.1. Raw velocities clipped to [-0.1, 0.1]
would saturate such a policy, leaving almost no gradient signal (and force its
standard deviation down by 10x during training).

The same pure function ``navigation_step`` moves one agent (single env, batch
of 1) or all T*E agents (native vector env). ``Navigation2DTorchVectorEnv`` is the
native env as torch tensors on the policy's device (``vectorization: torch``): on a
GPU the sampler then never leaves the device. Its ``navigation_step_torch`` is tested
against the numpy one: positions and terminations bit for bit, distances (rewards) to
one float64 ulp, as torch's vectorised CPU ``sqrt`` is not always correctly rounded.
It is the sampler's env, not a general gymnasium ``VectorEnv``:

- ``reset(options={"device": d})`` puts the state on device ``d`` (the sampler passes
  its policy's); every episode starts at the origin, so ``seed`` changes nothing;
- each episode runs once per ``reset``: an ended episode is held (observation kept,
  reward 0, its flags repeated) until the next reset, as the numpy env does under
  ``options={"hold_ended": True}``;
- ``step`` takes (N, 2) tensors and returns tensors: obs (N, 2) float32, reward (N,)
  float64, terminated (N,), truncated (N,), info of (N,) tensors.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from envs.base import (
    Task,
    TaskVectorEnv,
    check_layout,
    check_max_episode_steps,
    check_num_tasks,
    check_task_keys,
)
from envs.family import BuiltinTaskFamily, check_range

MAX_SPEED = 0.1
GOAL_TOLERANCE = 0.01
HORIZON = 100  # the MAML paper's navigation episodes; the family's and vector env's default
DEFAULT_TASK: Task = {"goal": np.array([0.25, 0.25])}


def _spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    return observation_space, action_space


def _goal(task: Task) -> np.ndarray:
    check_task_keys(task, ("goal",), "Navigation2D")
    goal = np.asarray(task["goal"], dtype=np.float64)
    if goal.shape != (2,):
        raise ValueError(f"Navigation2D goal must have shape (2,), got {goal.shape}")
    return goal


def navigation_step(position: np.ndarray, action: np.ndarray, goal: np.ndarray):
    """Move a batch of agents.

    Args:
        position: (B, 2) float64. action: (B, 2), clipped to [-1, 1]. goal: (B, 2).

    Returns:
        new position (B, 2), reward (B,), terminated (B,) bool, info of (B,) arrays.
    """
    position = position + MAX_SPEED * np.clip(action, -1.0, 1.0)
    offset = position - goal
    distance = np.linalg.norm(offset, axis=-1)
    info = {"reward_distance": -distance, "distance": distance}
    # The box test of the original point env (rllab), not a disc: a disc ends fewer
    # episodes, and the steps after reaching the goal then cost return.
    reached = np.all(np.abs(offset) < GOAL_TOLERANCE, axis=-1)
    return position, -distance, reached, info


class Navigation2D(gym.Env):
    """Point agent moving to a goal in the plane; see the module docstring.

    Args:
        task: ``{"goal": (2,) array}``; None: goal (0.25, 0.25).
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Task | None = None):
        self.observation_space, self.action_space = _spaces()
        self.set_task(DEFAULT_TASK if task is None else task)
        self._position = np.zeros(2)

    def set_task(self, task: Task) -> None:
        self._goal = _goal(task)
        self.task = task

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = np.zeros(2)
        return self._position.astype(np.float32), {}

    def step(self, action):
        position, reward, terminated, info = navigation_step(
            self._position[None], np.asarray(action, dtype=np.float64)[None], self._goal[None]
        )
        self._position = position[0]
        info = {k: float(v[0]) for k, v in info.items()}
        return self._position.astype(np.float32), float(reward[0]), bool(terminated[0]), False, info


class Navigation2DVectorEnv(TaskVectorEnv):
    """T tasks x E episodes of ``Navigation2D`` as (N, 2) arrays.

    Args:
        tasks: T task dicts (None: one default task, ``num_envs`` episodes).
        episodes_per_task: E.
        num_envs: optional check (``gymnasium.make_vec`` passes it).
        max_episode_steps: horizon (None: no time limit).
    """

    def __init__(
        self,
        tasks: list[Task] | None = None,
        episodes_per_task: int = 1,
        *,
        num_envs: int | None = None,
        max_episode_steps: int | None = HORIZON,
    ):
        tasks, episodes_per_task = check_layout(tasks, episodes_per_task, num_envs, DEFAULT_TASK)
        super().__init__(tasks, episodes_per_task, max_episode_steps, *_spaces())
        self._position = np.zeros((self.num_envs, 2))

    def _check_task(self, task: Task) -> None:
        _goal(task)

    def _set_task_arrays(self, tasks: list[Task]) -> None:
        self._goals = self.repeat_tasks(np.stack([_goal(t) for t in tasks]))  # (N, 2)

    def _reset_envs(self, idx: np.ndarray) -> np.ndarray:
        self._position[idx] = 0.0
        return self._position[idx].astype(np.float32)

    def _step_envs(self, actions: np.ndarray, active: np.ndarray | None):
        # All envs: stepping a point is cheaper than selecting the active ones.
        self._position, reward, terminated, info = navigation_step(
            self._position, actions, self._goals
        )
        return self._position.astype(np.float32), reward, terminated, info


def navigation_step_torch(position: Tensor, action: Tensor, goal: Tensor):
    """``envs.navigation.navigation_step`` on tensors.

    Args:
        position: (B, 2) float64. action: (B, 2). goal: (B, 2) float64.

    Returns:
        new position (B, 2), reward (B,), terminated (B,) bool, info of (B,) tensors.
    """
    position = position + MAX_SPEED * action.to(position.dtype).clamp(-1.0, 1.0)
    offset = position - goal
    distance = (offset * offset).sum(-1).sqrt()  # what np.linalg.norm computes
    info = {"reward_distance": -distance, "distance": distance}
    reached = (offset.abs() < GOAL_TOLERANCE).all(-1)
    return position, -distance, reached, info


class Navigation2DTorchVectorEnv:
    """``Navigation2DVectorEnv`` as device tensors; see the module docstring.

    Args:
        tasks: T task dicts (None: one default task, ``num_envs`` episodes).
        episodes_per_task: E.
        num_envs: optional check.
        max_episode_steps: horizon (None: no time limit).
    """

    metadata = {"hold_ended": True, "device_resident": True}

    def __init__(
        self,
        tasks: list[Task] | None = None,
        episodes_per_task: int = 1,
        *,
        num_envs: int | None = None,
        max_episode_steps: int | None = HORIZON,
    ):
        tasks, episodes_per_task = check_layout(tasks, episodes_per_task, num_envs, DEFAULT_TASK)
        check_max_episode_steps(max_episode_steps)
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        self.num_envs = self.num_tasks * episodes_per_task
        self.max_episode_steps = max_episode_steps
        self.single_observation_space, self.single_action_space = _spaces()
        self.device = torch.device("cpu")
        self.set_tasks(tasks)
        self.reset()

    def set_tasks(self, tasks: list[Task]) -> None:
        """Run ``tasks`` from now on (same number of tasks); call ``reset`` next."""
        tasks = check_num_tasks(tasks, self.num_tasks)
        goals = np.stack([_goal(task) for task in tasks])  # checks every task first
        self.tasks = tasks
        self._goal_array = np.repeat(goals, self.episodes_per_task, axis=0)  # (N, 2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """All episodes at the origin, on ``options["device"]`` if given (else as before).

        Returns:
            obs (N, 2) float32 and an empty info dict.
        """
        self.device = torch.device((options or {}).get("device", self.device))
        self._goals = torch.as_tensor(self._goal_array, device=self.device)
        self._position = torch.zeros(self.num_envs, 2, dtype=torch.float64, device=self.device)
        self._terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._truncated = torch.zeros_like(self._terminated)
        self._elapsed = 0  # every running episode is at the same step
        return self._position.float(), {}

    def step(self, actions: Tensor):
        """Step the running episodes; see the module docstring for what is returned."""
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"actions must have shape ({self.num_envs}, 2), "
                             f"got {tuple(actions.shape)}")
        running = ~(self._terminated | self._truncated)
        position, reward, reached, info = navigation_step_torch(
            self._position, actions.to(self.device), self._goals)
        self._position = torch.where(running[:, None], position, self._position)
        zero = torch.zeros((), dtype=reward.dtype, device=self.device)
        reward = torch.where(running, reward, zero)
        info = {name: torch.where(running, value, zero) for name, value in info.items()}
        self._elapsed += 1
        out_of_time = self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps
        self._terminated = torch.where(running, reached, self._terminated)
        self._truncated = self._truncated | (running & out_of_time)
        return (self._position.float(), reward, self._terminated.clone(),
                self._truncated.clone(), info)

    def close(self) -> None:
        pass


class Navigation2DFamily(BuiltinTaskFamily):
    """Goals uniform in the square ``[low, high]^2``.

    Args:
        low, high: goal coordinate range (default [-0.5, 0.5]).
        max_episode_steps: horizon (default 100).
        vectorization: ``"native"`` | ``"sync"`` | ``"async"`` | ``"torch"``
            (on the policy's device).
    """

    name = "Navigation2D"
    env_cls = Navigation2D
    vector_env_cls = Navigation2DVectorEnv
    torch_vector_env_cls = Navigation2DTorchVectorEnv
    default_max_episode_steps = HORIZON

    def __init__(self, low: float = -0.5, high: float = 0.5, **kwargs):
        check_range(low, high, "Navigation2D goal")
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        goals = rng.uniform(self.low, self.high, size=(n, 2))
        return [{"goal": goal} for goal in goals]
