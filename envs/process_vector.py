"""A vector env of single envs split over a few worker processes.

Gymnasium's ``AsyncVectorEnv`` runs one process per env: for T*E = 100 envs that is
100 processes. ``BlockVectorEnv`` runs ``workers`` processes, each stepping a
``SyncVectorEnv`` over a contiguous block of the envs, so that envs whose step is
Python (Meta-World's reward code) use several cores. Seeds, autoreset and infos
are the blocks' ``SyncVectorEnv``'s, concatenated: the same trajectories as one
``SyncVectorEnv`` of all the envs (tested).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import sys

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_freed_blocks(threshold: int = 4 * 2**20) -> bool:
    """Have glibc map blocks above ``threshold`` bytes on their own and unmap them on free.

    Why: glibc's default threshold rises to the size of any mapped block freed, so
    later large blocks come from the heap, which only shrinks from its top. Envs built
    and dropped while others live (Meta-World's, ~18 MB of MuJoCo model and data each,
    when sub-envs switch classes) then leave holes: an ML10 worker grew by 0.3 GB per
    meta-iteration. A fixed threshold keeps it flat (measured). False where it does not
    apply (not Linux with glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def _worker(pipe, env_fns) -> None:
    return_freed_blocks()
    env = gym.vector.SyncVectorEnv(env_fns)
    try:
        while True:
            command, data = pipe.recv()
            if command == "reset":
                pipe.send(env.reset(**data))
            elif command == "step":
                pipe.send(env.step(data))
            elif command == "set_attr":
                env.set_attr(*data)
                pipe.send(None)
            elif command == "spaces":
                pipe.send((env.single_observation_space, env.single_action_space))
            elif command == "close":
                break
    finally:
        env.close()
        pipe.close()


def _merge_infos(infos: list[dict], sizes: list[int]) -> dict:
    """Concatenate the blocks' vector infos (a key missing in a block: zeros, masked)."""
    merged = {}
    for key in {k for info in infos for k in info}:
        parts = []
        for info, size in zip(infos, sizes):
            if key in info:
                parts.append(np.asarray(info[key]))
            else:
                dtype = bool if key.startswith("_") else np.float64
                parts.append(np.zeros(size, dtype=dtype))
        merged[key] = np.concatenate(parts)
    return merged


class BlockVectorEnv(VectorEnv):
    """``len(env_fns)`` envs in ``workers`` processes (contiguous blocks, in order)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, env_fns: list, workers: int = 2, context: str = "spawn"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.num_envs = len(env_fns)
        workers = min(workers, self.num_envs)
        bounds = np.linspace(0, self.num_envs, workers + 1).astype(int)
        self._offsets = bounds[:-1].tolist()
        self._sizes = np.diff(bounds).tolist()
        ctx = multiprocessing.get_context(context)
        self._pipes, self._processes = [], []
        for start, size in zip(self._offsets, self._sizes):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, env_fns[start:start + size]),
                                  daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        self._pipes[0].send(("spaces", None))
        self.single_observation_space, self.single_action_space = self._pipes[0].recv()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.closed = False

    def _all(self, messages: list) -> list:
        for pipe, message in zip(self._pipes, messages):
            pipe.send(message)
        return [pipe.recv() for pipe in self._pipes]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Env i is seeded with seed + i, as ``SyncVectorEnv`` seeds it."""
        results = self._all([("reset", {"seed": None if seed is None else seed + start,
                                        "options": options}) for start in self._offsets])
        obs = np.concatenate([r[0] for r in results])
        return obs, _merge_infos([r[1] for r in results], self._sizes)

    def step(self, actions):
        actions = np.asarray(actions)
        results = self._all([("step", actions[start:start + size])
                             for start, size in zip(self._offsets, self._sizes)])
        obs, rewards, terminated, truncated = (np.concatenate([r[i] for r in results])
                                               for i in range(4))
        return obs, rewards, terminated, truncated, _merge_infos([r[4] for r in results],
                                                                  self._sizes)

    def set_attr(self, name: str, values) -> None:
        values = list(values) if isinstance(values, (list, tuple)) else [values] * self.num_envs
        self._all([("set_attr", (name, values[start:start + size]))
                   for start, size in zip(self._offsets, self._sizes)])

    def close_extras(self, **kwargs) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=10)
