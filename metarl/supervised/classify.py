"""Per-task classification losses for models that take one parameter set (Conv4).

``metarl.supervised.meta_step`` adapts *stacked* parameters (leading dim T)
with one ``autograd.grad`` of the summed task losses. Conv4 cannot take
stacked parameters itself, so the task loss evaluates the T tasks either

- ``vmap``: ``torch.func.vmap`` of the one-task forward over (params, images),
  one batched (grouped) convolution per layer for all tasks; or
- ``loop``: a Python loop over tasks, T small forward passes.

Both give the same gradients as adapting each task separately (tested on
Conv4 with its batch norm). Measured (``experiments/bench/supervised.py``, 1
thread): Omniglot 5-way 1-shot, meta-batch 32, second order: vmap 0.58 s per
meta-iteration, loop 0.94 s, a plain per-task autograd loop 0.89 s, so vmap is
the default. With few large tasks (MiniImageNet 5-way 1-shot, 4 tasks of 80
images, one inner step) the loop wins: 7.2 s against 9.0 s for vmap, which the
MiniImageNet configs select.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.functional import Params, call, vmap_call

ADAPT_MODES = ("vmap", "loop")


def task_logits(model: nn.Module, params: Params, x: Tensor, mode: str = "vmap") -> Tensor:
    """Logits of every task with its own parameters.

    params: stacked (T, ...); x: (T, n, channels, H, W) -> (T, n, classes).
    Batch norm uses each task's own batch statistics in both modes.
    """
    if mode == "vmap":
        return vmap_call(model, params, x)
    if mode == "loop":
        # unbind, not params[k][t]: indexing's backward writes a full (T, ...) zero tensor per
        # task (T^2 memory and time); unbind's backward is one stack.
        per_task = {k: v.unbind(0) for k, v in params.items()}
        return torch.stack([call(model, {k: v[t] for k, v in per_task.items()}, x[t])
                            for t in range(x.shape[0])])
    raise ValueError(f"adapt mode must be one of {ADAPT_MODES}, got {mode!r}")


def cross_entropy_per_task(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of each task: logits (T, n, classes), labels (T, n) -> (T,)."""
    losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return losses.view(labels.shape).mean(dim=1)


def accuracy_per_task(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of correct predictions of each task: (T, n, classes), (T, n) -> (T,)."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=1)


def cross_entropy_loss(mode: str = "vmap"):
    """A ``meta_step.TaskLoss``: (model, stacked params, (x, y)) -> loss per task (T,)."""
    if mode not in ADAPT_MODES:
        raise ValueError(f"adapt mode must be one of {ADAPT_MODES}, got {mode!r}")

    def task_loss(model: nn.Module, params: Params, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return cross_entropy_per_task(task_logits(model, params, x, mode), y)

    return task_loss
