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
of 1) or all T*E agents (native vector env).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.base import Task, TaskVectorEnv, check_layout, check_task_keys
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


class Navigation2DFamily(BuiltinTaskFamily):
    """Goals uniform in the square ``[low, high]^2``.

    Args:
        low, high: goal coordinate range (default [-0.5, 0.5]).
        max_episode_steps: horizon (default 100).
        vectorization: ``"native"`` | ``"sync"`` | ``"async"``.
    """

    name = "Navigation2D"
    env_cls = Navigation2D
    vector_env_cls = Navigation2DVectorEnv
    default_max_episode_steps = HORIZON

    def __init__(self, low: float = -0.5, high: float = 0.5, **kwargs):
        check_range(low, high, "Navigation2D goal")
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        goals = rng.uniform(self.low, self.high, size=(n, 2))
        return [{"goal": goal} for goal in goals]
