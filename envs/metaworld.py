"""Meta-World (Farama-Foundation/Metaworld 3.x) as task families: ML1, ML10, ML45.

A task is ``{"env_name": "push-v3", "index": i, "split": "train"}``: goal ``i`` of
that class among the benchmark's train tasks (``split="train"``) or test tasks (``"test"``),
which Meta-World keeps disjoint (ML1: other goals; ML10/ML45: other classes).
Training uses the train split; ``metarl evaluate`` the test split
(``held_out()``). A meta-batch of ML10/ML45 mixes classes: every task draws its
class and goal. Observations ``Box(39,)`` (the goal zeroed, as the benchmark
sets it), actions ``Box(-1, 1, (4,))``, ``info["success"]`` every step; an
episode succeeds if it succeeds at any step.

Install: ``pip install -e ".[metaworld]" && pip install --no-deps metaworld==3.1.1``.
metaworld 3.1.1 pins mujoco 3.3.0; metarl needs mujoco 4 (``mujoco.batch``), so
metaworld is installed without its pin and ``envs.metaworld_patches`` adapts its
one incompatibility (a weld's ``eq_data``); trajectories then differ from mujoco
3.3's by floating-point amounts (engine versions differ). The same module replaces
three of Meta-World's functions with faster ones that give the same results (tested).
"""

from __future__ import annotations

import difflib
import functools
import os

import gymnasium as gym
import numpy as np

from envs.adapter import make_task_vector_env
from envs.base import Task, check_task_keys

BENCHMARKS = ("ML1", "ML10", "ML45")
SPLITS = ("train", "test")
INSTALL = 'pip install -e ".[metaworld]" && pip install --no-deps metaworld==3.1.1'
HORIZON = 500  # Meta-World's max_path_length: stepping further raises


def _import_metaworld():
    try:
        import metaworld
    except ImportError:
        raise ImportError(f"Meta-World is not installed: {INSTALL}") from None
    from envs import metaworld_patches

    metaworld_patches.apply()
    return metaworld


@functools.lru_cache(maxsize=8)
def benchmark(name: str, env_name: str | None, seed: int):
    """The metaworld benchmark object (ML45 takes ~30 s to build: cached)."""
    metaworld = _import_metaworld()
    if name not in BENCHMARKS:
        raise ValueError(f"Meta-World benchmark must be one of {BENCHMARKS}, got {name!r}")
    if name == "ML1":
        names = sorted(metaworld.ML1.ENV_NAMES)
        if env_name not in names:
            close = difflib.get_close_matches(str(env_name), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown Meta-World ML1 env_name {env_name!r}; {hint}"
                             f"known: {', '.join(names)}")
        return metaworld.ML1(env_name, seed=seed)
    if env_name is not None:
        raise ValueError(f"{name} runs its own classes: leave env_name unset, got {env_name!r}")
    return getattr(metaworld, name)(seed=seed)


def split_tasks(bench, split: str) -> tuple[dict, dict[str, list]]:
    """(classes by name, Meta-World task objects by class name) of a split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    classes = bench.train_classes if split == "train" else bench.test_classes
    tasks = bench.train_tasks if split == "train" else bench.test_tasks
    by_class = {name: [t for t in tasks if t.env_name == name] for name in classes}
    return dict(classes), by_class


class IdleEnvs:
    """Meta-World envs of this process that no ``MetaWorldEnv`` holds, by class.

    A ``MetaWorldEnv`` holds one Sawyer env, of its task's class (~18 MB and ~60 ms to
    build each). Keeping one per class it ever ran made an ML10 run's sub-envs grow
    towards 10 each (10 GB in the first iteration); now a class switch hands the old
    env here and takes an idle one of the new class, or builds it. At most
    ``capacity`` wait, the longest-idle closed first. A reused env gives the same
    trajectories as a new one after ``set_task`` and ``reset(seed)`` (tested), so
    which one a sub-env gets changes nothing.
    """

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._idle: list[tuple[tuple, gym.Env]] = []  # oldest first

    def take(self, key: tuple, build) -> gym.Env:
        for i, (idle_key, env) in enumerate(self._idle):
            if idle_key == key:
                del self._idle[i]
                return env
        return build()

    def give(self, key: tuple, env: gym.Env) -> None:
        self._idle.append((key, env))
        while len(self._idle) > self.capacity:
            self._idle.pop(0)[1].close()

    def __len__(self) -> int:
        return len(self._idle)


_IDLE = IdleEnvs()


class MetaWorldEnv(gym.Env):
    """One Sawyer env that runs any task of a benchmark's split; ``set_task`` switches.

    Args:
        task: ``{"env_name", "index", "split"}`` (None: goal 0 of the first class).
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: the ML1 class (e.g. ``"reach-v3"``); None for ML10/ML45.
        split: ``"train"`` or ``"test"``.
        seed: the benchmark's seed (its goals).
    """

    metadata = {"render_modes": []}

    def __init__(self, task: Task | None = None, benchmark_name: str = "ML1",
                 env_name: str | None = "reach-v3", split: str = "train", seed: int = 0):
        self._classes, self._tasks = split_tasks(benchmark(benchmark_name, env_name, seed),
                                                 split)
        self.split = split
        self._pool_key = (benchmark_name, env_name, split, seed)
        self._env, self._env_name = None, None
        first = next(iter(self._classes))
        self.set_task(task or {"env_name": first, "index": 0, "split": split})
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space

    def _switch_class(self, name: str) -> None:
        """Hold one env of class ``name``, from this process's idle ones where it can."""
        if name == self._env_name:
            return
        if self._env is not None:
            _IDLE.give((*self._pool_key, self._env_name), self._env)
        self._env = _IDLE.take((*self._pool_key, name), self._classes[name])
        self._env_name = name

    def set_task(self, task: Task) -> None:
        check_task_keys(task, ("env_name", "index", "split"), "Meta-World")
        name, index = task["env_name"], int(task["index"])
        if task["split"] != self.split:  # e.g. a held-out goal or class in training
            raise ValueError(f"a {task['split']} task given to a {self.split}-split env")
        if name not in self._tasks:
            raise ValueError(f"{name!r} is not a class of this split; it has "
                             f"{', '.join(self._tasks)}")
        if not 0 <= index < len(self._tasks[name]):
            raise ValueError(f"{name} has {len(self._tasks[name])} goals, got index {index}")
        self._switch_class(name)
        self._env.set_task(self._tasks[name][index])
        self.task = {"env_name": name, "index": index, "split": self.split}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed)
        return np.asarray(obs, dtype=self.observation_space.dtype), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(action)
        info = {"success": float(info.get("success", 0.0))}
        return (np.asarray(obs, dtype=self.observation_space.dtype), float(reward),
                bool(terminated), bool(truncated), info)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._env_name = None, None


class MetaWorldFamily:
    """Meta-World ML1 / ML10 / ML45 as a ``envs.base.TaskFamily``.

    ``max_envs`` (class attribute): sub-envs one vector env may hold, about 18 MB each;
    evaluation adapts larger task sets in chunks (``rl.evaluate.adaptation_curves``).

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: the ML1 class; None for ML10 and ML45.
        split: ``"train"`` (training) or ``"test"`` (held-out goals or classes).
        seed: the benchmark's seed.
        max_episode_steps: horizon (at most Meta-World's 500).
        vectorization: ``"processes"`` (``workers`` processes, each stepping a block of
            the envs), ``"sync"`` (one process) or ``"async"`` (a process per env).
        workers: processes of ``"processes"`` (default: the CPUs this process may use).
    """

    max_envs = 400

    def __init__(self, benchmark_name: str = "ML1", env_name: str | None = None,
                 split: str = "train", seed: int = 0, max_episode_steps: int | None = None,
                 vectorization: str = "processes", workers: int | None = None):
        if benchmark_name == "ML1" and env_name is None:
            env_name = "reach-v3"
        self.max_episode_steps = HORIZON if max_episode_steps is None else max_episode_steps
        if not 1 <= self.max_episode_steps <= HORIZON:
            raise ValueError(f"Meta-World episodes last at most {HORIZON} steps, got "
                             f"max_episode_steps={max_episode_steps}")
        self.kwargs = {"benchmark_name": benchmark_name, "env_name": env_name,
                       "split": split, "seed": seed}
        self.vectorization = vectorization
        self.workers = workers or len(os.sched_getaffinity(0))
        _, by_class = split_tasks(benchmark(benchmark_name, env_name, seed), split)
        self.split = split
        self.name = f"MetaWorld{benchmark_name}"
        self.all_tasks = [{"env_name": name, "index": i, "split": split}
                          for name, goals in by_class.items() for i in range(len(goals))]

    def held_out(self) -> MetaWorldFamily:
        """The same benchmark on its test split (what evaluation runs on)."""
        return MetaWorldFamily(**{**self.kwargs, "split": "test"},
                               max_episode_steps=self.max_episode_steps,
                               vectorization=self.vectorization, workers=self.workers)

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` (class, goal) tasks of the split, uniform, without repeats while n allows."""
        count = len(self.all_tasks)
        picks = rng.choice(count, size=n, replace=n > count)
        return [dict(self.all_tasks[i]) for i in picks]

    def make_env(self, task: Task | None = None) -> gym.Env:
        env = MetaWorldEnv(task, **self.kwargs)
        return gym.wrappers.TimeLimit(env, self.max_episode_steps)

    def make_vector_env(self, tasks: list[Task], episodes_per_task: int):
        return make_task_vector_env(functools.partial(MetaWorldEnv, None, **self.kwargs),
                                    tasks, episodes_per_task,
                                    max_episode_steps=self.max_episode_steps,
                                    vectorization=self.vectorization, workers=self.workers)
