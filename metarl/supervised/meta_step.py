"""One meta-objective for every supervised method, on stacked per-task batches.

A batch is a pair ``(inputs, targets)`` of (T, K, ...) tensors. ``task_loss``
returns one loss per task, shape (T,), for stacked parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metarl.evaluate import step_sizes
from metarl.functional import Params, call, detach_params, expand_params
from metarl.meta import adapt, head_names, reptile_grads

TaskLoss = Callable[[nn.Module, Params, tuple[Tensor, Tensor]], Tensor]


def mse_per_task(model: nn.Module, params: Params, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean squared error of each task: x, y (T, K, 1) with stacked params -> (T,)."""
    x, y = batch
    return F.mse_loss(call(model, params, x), y, reduction="none").flatten(1).mean(dim=1)


def adapt_tasks(model: nn.Module, task_loss: TaskLoss, params: Mapping[str, Tensor],
                support: tuple[Tensor, Tensor], lr, steps: int, first_order: bool,
                inner_names=None, grad_checkpointing: bool = False) -> Params:
    """Adapt one copy of ``params`` per task on its support set; returns stacked (T, ...)."""
    num_tasks = support[0].shape[0]
    return adapt(lambda p, b: task_loss(model, p, b).sum(), expand_params(params, num_tasks),
                 support, lr, steps, first_order, inner_names, grad_checkpointing)


def inner_settings(method: str, model: nn.Module, inner_lr: float, rates=None,
                   task_params: Params | None = None, support_x: Tensor | None = None):
    """(lr, first_order, inner_names) of a method's inner loop.

    Task-adaptive MAML's rates depend on the tasks: give the stacked parameters the
    adaptation starts from (T, ...) and the support inputs (T, K, ...).
    """
    if method == "metasgd":
        lr = rates.as_dict()
    elif method == "tamaml":
        lr = rates.for_tasks(model, task_params, support_x)
    else:
        lr = inner_lr
    first_order = method in ("fomaml", "reptile")
    inner_names = head_names(model) if method == "anil" else None
    return lr, first_order, inner_names


def test_time_rates(config, model: nn.Module, rates, params: Params, support_x: Tensor,
                    steps: int, later_factor: float):
    """(step sizes of steps 1..steps, inner_names) for evaluating a trained run.

    params: the stacked (T, ...) start parameters; support_x: (T, K, ...). The rates
    are constants here (no graph), one per step (``metarl.evaluate.step_sizes``).
    """
    with torch.no_grad():
        lr, _, inner_names = inner_settings(config.method, model, config.inner_lr, rates,
                                            params, support_x)
    if isinstance(lr, dict):
        lr = detach_params(lr)
    return step_sizes(lr, steps, later_factor), inner_names


def meta_loss(method: str, model: nn.Module, task_loss: TaskLoss, params: Params,
              support, query, inner_lr: float, inner_steps: int, rates=None,
              grad_checkpointing: bool = False) -> Tensor:
    """Mean over tasks of the query loss after adapting on the support set.

    Differentiable with respect to ``params`` (and the learned ``rates`` of Meta-SGD
    and task-adaptive MAML) for maml / fomaml / metasgd / anil / tamaml.
    """
    return task_loss(model, adapted_params(method, model, task_loss, params, support, inner_lr,
                                           inner_steps, rates, grad_checkpointing), query).mean()


def adapted_params(method: str, model: nn.Module, task_loss: TaskLoss, params: Params, support,
                   inner_lr: float, inner_steps: int, rates=None,
                   grad_checkpointing: bool = False) -> Params:
    """The per-task parameters (stacked) after a method's inner loop on the support set."""
    stacked = expand_params(params, support[0].shape[0])
    lr, first_order, inner_names = inner_settings(method, model, inner_lr, rates, stacked,
                                                  support[0])
    return adapt(lambda p, b: task_loss(model, p, b).sum(), stacked, support, lr, inner_steps,
                 first_order, inner_names, grad_checkpointing)


def reptile_direction(model: nn.Module, task_loss: TaskLoss, params: Params, support, query,
                      inner_lr: float, inner_steps: int) -> tuple[Params, Tensor]:
    """Reptile's outer 'gradient' after SGD on support and query points together.

    Returns (grads by name, mean query loss after adaptation).
    """
    both = tuple(torch.cat([s, q], dim=1) for s, q in zip(support, query))
    adapted = adapt_tasks(model, task_loss, params, both, inner_lr, inner_steps, True)
    return reptile_grads(params, adapted), task_loss(model, adapted, query).mean().detach()

