"""The functional core: parameters as plain ``dict[str, Tensor]``.

A model's parameters live in an ``nn.Module`` (so ``state_dict`` and optimisers
work); ``params_of(module)`` is the entry into the functional world, and
``call(module, params, *args)`` runs the module with other tensors in place of
its own (``torch.func.functional_call``), never mutating it.

Per-task parameters are *stacked*: every tensor gets a leading task dimension
``T``. Models in ``metarl.models`` accept stacked parameters directly (a batched
matmul per layer), so one call evaluates all ``T`` tasks, each with its own
parameters; ``call_per_task`` also runs them by vmap or a loop over tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


def params_of(module: nn.Module, names: Sequence[str] | None = None) -> Params:
    """The module's own parameters by name (the live tensors, not copies)."""
    params = dict(module.named_parameters())
    return params if names is None else {k: params[k] for k in names}


def call(module: nn.Module, params: Mapping[str, Tensor], *args, **kwargs):
    """Run ``module(*args)`` with ``params`` in place of its parameters.

    Keys missing from ``params`` fall back to the module's own parameters.
    """
    return torch.func.functional_call(module, dict(params), args, kwargs, strict=False)


PER_TASK_MODES = ("native", "vmap", "loop")


def call_per_task(module: nn.Module, stacked: Params, x: Tensor, mode: str = "native",
                  **kwargs):
    """Each task's output with its own parameters: stacked (T, ...), x (T, ...) -> (T, ...).

    mode: ``"native"`` (the module takes stacked parameters itself: metarl's models),
    ``"vmap"`` (``torch.func.vmap`` of the one-task call) or ``"loop"`` (one call per
    task). kwargs go to the module's forward.
    """
    if mode == "native":
        return call(module, stacked, x, **kwargs)
    if mode == "vmap":
        return torch.func.vmap(lambda p, xi: call(module, p, xi, **kwargs))(stacked, x)
    if mode == "loop":
        # unbind, not stacked[k][t]: indexing's backward writes a full (T, ...) zero tensor per
        # task (T^2 memory and time); unbind's backward is one stack.
        per_task = {k: v.unbind(0) for k, v in stacked.items()}
        return torch.stack([call(module, {k: v[t] for k, v in per_task.items()}, x[t], **kwargs)
                            for t in range(x.shape[0])])
    raise ValueError(f"per-task mode must be one of {PER_TASK_MODES}, got {mode!r}")


def expand_params(params: Mapping[str, Tensor], num_tasks: int) -> Params:
    """Give every tensor a leading task dimension T (a view; gradients flow back summed)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def stack_params(per_task: Sequence[Mapping[str, Tensor]]) -> Params:
    """List of T parameter dicts -> one dict of (T, ...) tensors."""
    return {k: torch.stack([p[k] for p in per_task]) for k in per_task[0]}


def select_task(stacked: Mapping[str, Tensor], task: int) -> Params:
    """Task ``task``'s parameters out of a stacked dict."""
    return {k: v[task] for k, v in stacked.items()}


def sgd_step(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    lr: float | Mapping[str, Tensor],
) -> Params:
    """``params - lr * grads`` as new tensors.

    lr: one float, or a dict of per-parameter rates (Meta-SGD) broadcast
    against the (possibly stacked) parameters. A ``None`` gradient (parameter
    not used by the loss) leaves the parameter unchanged.
    """
    out = {}
    for k, p in params.items():
        g = grads.get(k)
        if g is None:
            out[k] = p
            continue
        rate = lr[k] if isinstance(lr, Mapping) else lr
        out[k] = p - rate * g
    return out


def flatten(tensors: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector (dict values in key order)."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Split a flat vector back into tensors shaped like ``like``."""
    out, start = {}, 0
    for k, t in like.items():
        out[k] = vector[start : start + t.numel()].view_as(t)
        start += t.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} elements, parameters need {start}")
    return out


def detach_params(params: Mapping[str, Tensor]) -> Params:
    """The same tensors cut from the graph (no copies)."""
    return {k: v.detach() for k, v in params.items()}
