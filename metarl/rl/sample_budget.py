"""Episodes by sample budget: whole episodes until each task holds N steps.

The MAML paper's test scripts (cbfinn/maml_rl, rllab's samplers) collect every
update's data as a budget of steps, 4000 for 2D navigation, not as a number of
episodes. Two ways to spend it:

- ``first``: per task the first episodes (in the order they were drawn) that reach
  the budget, the last one whole. Every episode drawn before the count is reached
  counts, so the batch is an unbiased sample of the policy's episodes.
- ``lockstep``: what rllab's ``VectorizedSampler`` did, which produced the paper's
  figures. E envs step in lockstep, each restarting as soon as its episode ends; the
  batch is the episodes *finished* at the first step at which they hold the budget.
  Episodes still running then are dropped, so short episodes are over-represented:
  where episodes end early at the goal (navigation after adaptation) the batch's
  mean return is biased upward, and the inner step is taken on that batch.

Both are built from whole rounds of ``rollout`` (one episode per env, episodes of
one env in successive rounds are that env's successive episodes).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from metarl.rl.episodes import Episodes
from metarl.rl.sampler import rollout

SELECTIONS = ("first", "lockstep")
_FIELDS = ("obs", "actions", "rewards", "mask")


def concat_episodes(parts: list[Episodes]) -> Episodes:
    """Episodes of the same tasks side by side: (T, E_1 + E_2 + ..., H, ...)."""
    if len(parts) == 1:
        return parts[0]
    success = None if parts[0].success is None else torch.cat([p.success for p in parts], 1)
    return Episodes(*(torch.cat([getattr(p, name) for p in parts], 1) for name in _FIELDS),
                    success=success)


def first_episodes_with(episodes: Episodes, samples: int) -> Episodes:
    """Per task, the first episodes that reach ``samples`` steps, the last one whole (it
    crosses the count); the later episodes are masked out entirely. (T, E, H, ...)."""
    lengths = episodes.mask.sum(-1)  # (T, E)
    keep = (lengths.cumsum(1) - lengths < samples).to(episodes.mask.dtype)
    return replace(episodes, mask=episodes.mask * keep[..., None])


def sample_episodes(env, policy, params: dict[str, Tensor], horizon: int, rng, generator,
                    samples: int | None = None) -> Episodes:
    """One rollout of the env's E episodes per task, or, with ``samples``, rounds of them
    until every task has at least that many steps, trimmed by ``first_episodes_with``."""
    parts = []
    while True:
        parts.append(rollout(env, policy, params, horizon, int(rng.integers(2**31 - 1)),
                             generator))
        if samples is None:
            return parts[0]
        steps = sum(part.mask.sum((1, 2)) for part in parts)
        if bool((steps >= samples).all()):
            return first_episodes_with(concat_episodes(parts), samples)


def finished_in_lockstep(lengths: Tensor, envs: int, samples: int) -> Tensor | None:
    """Which episodes rllab's lockstep sampler returns, or None if not yet decidable.

    lengths: (R * envs,) episode lengths of one task in round-major order (episode
    r * envs + j is env j's r-th). The sampler stops at the first step k at which the
    episodes finished by k (those whose env's cumulative length reaches their end by
    k) hold >= ``samples`` steps. Decidable once k is at most the shortest env's total
    (every episode ending by then is known). Returns a (R * envs,) bool mask.
    """
    ends = lengths.view(-1, envs).cumsum(0).flatten()  # the step at which each one ends
    order = torch.argsort(ends, stable=True)
    held = lengths[order].cumsum(0)  # steps finished once each episode, in end order, ends
    reached = (held >= samples).nonzero()
    if len(reached) == 0:
        return None
    stop = ends[order[reached[0, 0]]]
    if stop > ends.view(-1, envs)[-1].min():
        return None
    return ends <= stop


def _task(episodes: Episodes, t: int, index: Tensor | None = None) -> Episodes:
    """Task t's episodes as (1, E', H, ...), all of them or those at ``index``."""
    parts = {name: getattr(episodes, name)[t:t + 1] for name in _FIELDS}
    if episodes.success is not None:
        parts["success"] = episodes.success[t:t + 1]
    if index is not None:
        parts = {k: v[:, index] for k, v in parts.items()}
    return Episodes(**parts)


def _stack_padded(per_task: list[Episodes]) -> Episodes:
    """(1, E_t, H, ...) per task -> (T, max E_t, H, ...); padding episodes have mask 0."""
    most = max(e.episodes_per_task for e in per_task)

    def pad(x: Tensor) -> Tensor:
        missing = most - x.shape[1]
        return x if missing == 0 else torch.cat([x, x.new_zeros(1, missing, *x.shape[2:])], 1)

    names = [*_FIELDS] + (["success"] if per_task[0].success is not None else [])
    return Episodes(**{n: torch.cat([pad(getattr(e, n)) for e in per_task]) for n in names})


def sample_in_lockstep(family, tasks: list, policy, params: dict[str, Tensor], horizon: int,
                       envs: int, samples: int, rng, generator) -> Episodes:
    """rllab's lockstep sampler for every task: (T, E, H, ...) with E the most episodes
    any task kept, the others padded with masked-out episodes.

    Rounds of ``envs`` episodes per task are drawn (a fresh vector env of the tasks still
    undecided, rollout seed from ``rng``) until ``finished_in_lockstep`` decides each task.
    params: stacked (T, ...) policy parameters.
    """
    drawn: list[list[Episodes]] = [[] for _ in tasks]
    kept: list[Episodes | None] = [None] * len(tasks)
    pending = list(range(len(tasks)))
    while pending:
        env = family.make_vector_env([tasks[t] for t in pending], envs)
        try:
            index = torch.tensor(pending)
            rounds = rollout(env, policy, {k: v[index] for k, v in params.items()}, horizon,
                             int(rng.integers(2**31 - 1)), generator)
        finally:
            env.close()
        undecided = []
        for i, t in enumerate(pending):
            drawn[t].append(_task(rounds, i))
            # Decide on the lengths alone; the episodes are joined once, when decided.
            lengths = torch.cat([part.mask[0].sum(-1) for part in drawn[t]])
            keep = finished_in_lockstep(lengths, envs, samples)
            if keep is None:
                undecided.append(t)
            else:
                kept[t] = _task(concat_episodes(drawn[t]), 0, keep.nonzero().flatten())
                drawn[t] = []
        pending = undecided
    return _stack_padded(kept)
