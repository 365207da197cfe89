"""Per-task classification losses for Conv4 on stacked parameters.

``metarl.supervised.meta_step`` adapts *stacked* parameters (leading dim T)
with one ``autograd.grad`` of the summed task losses. The task loss evaluates
the T tasks by one of three equivalent modes:

- ``grouped`` (default): Conv4's own stacked forward, one grouped convolution
  per layer (task t = group t) with the fast second derivatives of
  ``metarl.conv_ops``;
- ``vmap``: ``torch.func.vmap`` of the one-task forward over (params, images);
- ``loop``: a Python loop over tasks, T small forward passes.

All give the same gradients as adapting each task separately (tested on Conv4
with its batch norm, float64). Measured (``experiments/bench/supervised.py``, 1
thread, 2026-12-02), Omniglot 20-way 1-shot, meta-batch 16, 5 second-order steps:
grouped 1.79-1.87 s per meta-iteration, vmap 3.01-3.12 s, loop 3.49 s, and grouped
needs about half vmap's memory. MiniImageNet's configs (few, large tasks) keep the loop, which
measured faster than vmap there.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from metarl.functional import Params, call_per_task

ADAPT_MODES = ("grouped", "vmap", "loop")


def task_logits(model: nn.Module, params: Params, x: Tensor, mode: str = "grouped") -> Tensor:
    """Logits of every task with its own parameters.

    params: stacked (T, ...); x: (T, n, channels, H, W) -> (T, n, classes).
    Batch norm uses each task's own batch statistics in every mode.
    """
    return call_per_task(model, params, x, per_task_mode(mode))


def per_task_mode(mode: str) -> str:
    """A config's ``adapt`` mode as a ``metarl.functional.call_per_task`` mode."""
    if mode not in ADAPT_MODES:
        raise ValueError(f"adapt mode must be one of {ADAPT_MODES}, got {mode!r}")
    return "native" if mode == "grouped" else mode


def cross_entropy_per_task(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of each task: logits (T, n, classes), labels (T, n) -> (T,)."""
    losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return losses.view(labels.shape).mean(dim=1)


def accuracy_per_task(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of correct predictions of each task: (T, n, classes), (T, n) -> (T,)."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=1)


def cross_entropy_loss(mode: str = "grouped"):
    """A ``meta_step.TaskLoss``: (model, stacked params, (x, y)) -> loss per task (T,)."""
    per_task_mode(mode)  # a bad mode fails here, before any training

    def task_loss(model: nn.Module, params: Params, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return cross_entropy_per_task(task_logits(model, params, x, mode), y)

    return task_loss
