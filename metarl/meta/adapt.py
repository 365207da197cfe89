"""Gradient-based adaptation (MAML's inner loop) on plain parameter dicts.

``adapt`` never touches a module: it returns new tensors. With
``first_order=False`` the inner gradients are part of the graph, so an outer
loss on the adapted parameters differentiates through the adaptation (MAML).
With ``first_order=True`` they are constants (first-order MAML): the outer
gradient is the gradient at the adapted parameters.

Vectorised over tasks: give ``adapt`` stacked parameters (leading dim T) and a
loss that sums the T per-task losses. Tasks do not interact, so the gradient
of the sum with respect to task t's parameters is task t's own gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from metarl.functional import Params, sgd_step, stack_params
from metarl.meta.recompute import recomputed_step

LossFn = Callable[[Params, Any], Tensor]


def adapt(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    batch: Any,
    lr: float | Mapping[str, Tensor],
    steps: int = 1,
    first_order: bool = False,
    inner_names: Collection[str] | None = None,
    grad_checkpointing: bool = False,
) -> Params:
    """Take ``steps`` gradient steps on ``loss_fn(params, batch)``.

    lr: a float, or per-parameter rates (Meta-SGD).
    inner_names: adapt only these parameters (ANIL: the head); the rest pass through.
    grad_checkpointing: second order only; recompute each step in the backward pass
    (``metarl.meta.recompute``): the same gradient in the memory of one step.
    Returns the adapted parameters (all keys of ``params``).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    params = dict(params)
    names = list(params) if inner_names is None else [k for k in params if k in inner_names]

    def step(current: Params, rate, create_graph: bool) -> Params:
        loss = loss_fn(current, batch)
        inputs = [current[k] for k in names]
        grads = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
        if not create_graph:
            grads = [None if g is None else g.detach() for g in grads]
        return sgd_step(current, dict(zip(names, grads)), rate)

    # First-order steps keep no inner graph anyway: nothing to recompute.
    recompute = grad_checkpointing and not first_order and torch.is_grad_enabled()
    for _ in range(steps):
        params = recomputed_step(step, params, lr) if recompute else step(params, lr,
                                                                        not first_order)
    return params


def adapt_per_task(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    batches: Sequence[Any],
    lr: float | Mapping[str, Tensor],
    steps: int = 1,
    first_order: bool = False,
    inner_names: Collection[str] | None = None,
) -> Params:
    """Reference: a Python loop over tasks, each adapted from the shared ``params``.

    Returns stacked parameters (leading dim T = len(batches)).
    """
    per_task = [adapt(loss_fn, params, b, lr, steps, first_order, inner_names) for b in batches]
    return stack_params(per_task)


def adapt_vmap(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    batches: Any,
    lr: float | Mapping[str, Tensor],
    steps: int = 1,
    first_order: bool = False,
    inner_names: Collection[str] | None = None,
) -> Params:
    """Per-task adaptation with ``torch.func.vmap(grad(...))``, for models that cannot
    take stacked parameters (convolutions). ``batches`` is a pytree of (T, ...) tensors;
    ``loss_fn(params, batch)`` sees one task's unstacked slice.

    Returns stacked parameters (leading dim T).
    """
    params = dict(params)
    names = list(params) if inner_names is None else [k for k in params if k in inner_names]

    def one_task(batch):
        current = dict(params)
        for _ in range(steps):
            inner = {k: current[k] for k in names}
            grads = torch.func.grad(lambda p, rest=current: loss_fn({**rest, **p}, batch))(inner)
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            current = sgd_step(current, grads, lr)
        return current

    return torch.func.vmap(one_task)(batches)
