"""Curvature products summed over slices of whole episodes.

``rl.mlp_fisher``'s products are sums over time steps of per-step terms (the
inner losses' and the KL's), so they can be computed slice by slice of the
episodes axis and added up. On a whole meta-batch every cached activation is
(T, E * H, width), 16 MB on navigation's 20 x 2000 steps at width 100: each of a
product's passes then streams from memory. On slices of about ``SLICE_STEPS``
steps the passes of one slice run on data still in cache. Slices hold whole
episodes (DiCE's terms run along an episode) and keep the whole batch's
per-task normaliser (``mlp_fisher.valid_steps``), so the sum is the same product.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from metarl.functional import Params
from metarl.rl.episodes import Episodes

SLICE_STEPS = 4096  # T * e * H per slice; the fastest of 2048-40 000 on navigation


def episode_slices(episodes: Episodes, steps: int | None = None) -> list[slice]:
    """Slices of the episodes axis, each of whole episodes and about ``steps`` steps
    over all tasks (default ``SLICE_STEPS``; at least one episode)."""
    steps = SLICE_STEPS if steps is None else steps
    per = max(1, steps // (episodes.num_tasks * episodes.horizon))
    total = episodes.episodes_per_task
    return [slice(start, min(start + per, total)) for start in range(0, total, per)]


def slice_episodes(episodes: Episodes, part: slice) -> Episodes:
    """Episodes ``part`` of every task, (T, e, H, ...)."""
    return Episodes(obs=episodes.obs[:, part], actions=episodes.actions[:, part],
                    rewards=episodes.rewards[:, part], mask=episodes.mask[:, part])


def _add(total: Params | None, part: Params) -> Params:
    if total is None:
        return part
    for name, value in part.items():
        total[name].add_(value)
    return total


class SlicedProduct:
    """``products[i](v)`` summed over the slices; ``surrogate_gradient`` likewise, each
    slice on its part of the advantages (T, E, H). A product of ``rl.mlp_fisher``
    built per slice: ``make(slice_of_episodes, part)``."""

    def __init__(self, episodes: Episodes, make: Callable[[Episodes, slice], object],
                 steps: int | None = None):
        self.parts = episode_slices(episodes, steps)
        self.products = [make(slice_episodes(episodes, part), part) for part in self.parts]

    def __call__(self, vector: Params) -> Params:
        total = None
        for product in self.products:
            total = _add(total, product(vector))
        return total

    def surrogate_gradient(self, advantages: Tensor) -> Params:
        total = None
        for product, part in zip(self.products, self.parts):
            total = _add(total, product.surrogate_gradient(advantages[:, part]))
        return total
