"""Curvature products summed over slices of the batch: a few tasks' whole episodes each.

``rl.mlp_fisher``'s products are sums over time steps of per-step terms (the
inner losses' and the KL's), each task's on its own, so they can be computed slice
by slice of the tasks and episodes axes and added up into each task's total. On a
whole meta-batch every cached activation is (T, E * H, width), 16 MB on
navigation's 20 x 2000 steps at width 100: each of a product's passes then streams
from memory. On slices of about ``SLICE_STEPS`` steps the passes of one slice run on
data still in cache; ``TASK_STEPS`` per task in a slice keeps each task's batched
matmul tall: slices of 2 tasks x 2000 steps made a product 1.10x (navigation, 20 x
2000 steps) and 1.09x (HalfCheetahVel, 40 x 2000) faster than slices of all tasks'
one or two episodes (``experiments/bench/fisher_product.py``). Slices hold whole
episodes (DiCE's terms run along an episode) and keep the whole batch's per-task
normaliser (``mlp_fisher.valid_steps``), so the sum is the same product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from metarl.functional import Params
from metarl.rl.episodes import Episodes

SLICE_STEPS = 4096  # steps per slice, over its tasks
TASK_STEPS = 2048  # steps per task in a slice, rounded down to whole episodes (at least one)


@dataclass(frozen=True)
class BatchSlice:
    """Tasks ``tasks`` and, of each, episodes ``episodes`` of a (T, E, H, ...) batch."""

    tasks: slice
    episodes: slice


def batch_slices(episodes: Episodes, steps: int | None = None,
                 task_steps: int | None = None) -> list[BatchSlice]:
    """Slices of about ``steps`` steps (default ``SLICE_STEPS``), each of whole episodes,
    about ``task_steps`` (default ``TASK_STEPS``) of every task in it; at least one
    episode of one task. Every (task, episode) is in exactly one slice."""
    steps = SLICE_STEPS if steps is None else steps
    task_steps = TASK_STEPS if task_steps is None else task_steps
    num_tasks, num_episodes, horizon = episodes.mask.shape
    per_task = min(num_episodes, max(1, task_steps // horizon))
    tasks = min(num_tasks, max(1, steps // (per_task * horizon)))
    return [BatchSlice(slice(t, min(t + tasks, num_tasks)), slice(e, min(e + per_task,
                                                                          num_episodes)))
            for t in range(0, num_tasks, tasks) for e in range(0, num_episodes, per_task)]


def slice_episodes(episodes: Episodes, part: BatchSlice) -> Episodes:
    """Episodes ``part.episodes`` of tasks ``part.tasks``, (t, e, H, ...)."""
    where = (part.tasks, part.episodes)
    return Episodes(obs=episodes.obs[where], actions=episodes.actions[where],
                    rewards=episodes.rewards[where], mask=episodes.mask[where])


def cast(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """x in ``dtype`` if it is floating-point (discrete actions stay); None: x as it is."""
    return x if dtype is None or not x.is_floating_point() else x.to(dtype)


def cast_params(params: Params, dtype: torch.dtype | None) -> Params:
    return {name: cast(value, dtype) for name, value in params.items()}


def cast_episodes(episodes: Episodes, dtype: torch.dtype | None) -> Episodes:
    if dtype is None:
        return episodes
    return Episodes(obs=cast(episodes.obs, dtype), actions=cast(episodes.actions, dtype),
                    rewards=cast(episodes.rewards, dtype), mask=cast(episodes.mask, dtype))


def take_tasks(params: Params, tasks: slice) -> Params:
    """Stacked (T, ...) dicts cut to tasks ``tasks``: views, no copies."""
    return {name: value[tasks] for name, value in params.items()}


def _add(total: Params | None, part: Params, tasks: slice, num_tasks: int,
         dtype: torch.dtype) -> Params:
    if total is None:
        total = {name: value.new_zeros((num_tasks, *value.shape[1:]), dtype=dtype)
                 for name, value in part.items()}
    for name, value in part.items():
        total[name][tasks].add_(value)
    return total


class SlicedProduct:
    """``products[i](v)`` summed over the slices into each task's total, (T, ...) by name;
    ``surrogate_gradient`` likewise, each slice on its part of the advantages (T, E, H).
    A product of ``rl.mlp_fisher`` built per slice, on its tasks' parameters:
    ``make(slice_of_episodes, part)``, part a ``BatchSlice``.

    dtype: the precision the slices' products were built in (``cast_episodes``); the
    vector is rounded to it on the way in, the totals are summed in the vector's.
    """

    def __init__(self, episodes: Episodes, make: Callable[[Episodes, BatchSlice], object],
                 steps: int | None = None, task_steps: int | None = None,
                 dtype: torch.dtype | None = None):
        self.num_tasks, self.dtype = episodes.num_tasks, dtype
        self.parts = batch_slices(episodes, steps, task_steps)
        self.products = [make(slice_episodes(episodes, part), part) for part in self.parts]

    def __call__(self, vector: Params) -> Params:
        total, out_dtype = None, next(iter(vector.values())).dtype
        low = cast_params(vector, self.dtype)
        for product, part in zip(self.products, self.parts):
            total = _add(total, product(take_tasks(low, part.tasks)), part.tasks,
                         self.num_tasks, out_dtype)
        return total

    def surrogate_gradient(self, advantages: Tensor) -> Params:
        total, out_dtype, low = None, advantages.dtype, cast(advantages, self.dtype)
        for product, part in zip(self.products, self.parts):
            gradient = product.surrogate_gradient(low[part.tasks, part.episodes])
            total = _add(total, gradient, part.tasks, self.num_tasks, out_dtype)
        return total
