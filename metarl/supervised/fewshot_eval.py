"""Few-shot adaptation curves: query accuracy and loss after 0..K inner steps.

Protocol (MAML paper, section 5.2): held-out N-way K-shot tasks from classes
never seen in meta-training, sampled with their own seed; gradient steps on
the support set with the training inner rate (Meta-SGD: the learned rates;
ANIL: head only); accuracy on the query set after every step. Batch norm
uses the query batch's statistics, as in training (the original MAML does the
same, so tasks are classified transductively).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from metarl.evaluate import load_run, mean_ci95, with_inner_lr
from metarl.functional import detach_params, expand_params, params_of
from metarl.meta import StepParams, adapt
from metarl.supervised.classify import (
    accuracy_per_task,
    cross_entropy_loss,
    cross_entropy_per_task,
    task_logits,
)
from metarl.supervised.fewshot import sample_fewshot
from metarl.supervised.meta_step import test_time_rates


def adaptation_curves(model: nn.Module, rates, config, support, query,
                      steps: int, later_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-task query (accuracy, loss) after 0..steps inner steps, each (T, steps + 1).

    support, query: (x (T, n, c, H, W), y (T, n)). Steps are taken one at a
    time without a second-order graph (the values are the same).
    """
    num_tasks = support[0].shape[0]
    params = detach_params(expand_params(params_of(model), num_tasks))
    if isinstance(rates, StepParams):  # MAML++: per-step rates and batch norm
        params = {k: params[k] for k in rates.inner_names}
        rates_per_step, norms = rates.test_time(config.inner_lr, steps, num_tasks, later_factor)
        inner_names = None
    else:
        rates_per_step, inner_names = test_time_rates(config, model, rates, params, support[0],
                                                      steps, later_factor)
        norms = [{}] * max(steps, 1)
    task_loss = cross_entropy_loss(config.adapt)
    accuracy, loss = [], []
    for step in range(steps + 1):
        if step > 0:
            with torch.enable_grad():
                params = {k: v.requires_grad_() for k, v in params.items()}
                step_loss = lambda p, b, n=norms[step - 1]: task_loss(model, {**p, **n}, b).sum()  # noqa: E731
                params = detach_params(adapt(step_loss, params, support,
                                             rates_per_step[step - 1], 1, True, inner_names))
        with torch.no_grad():
            logits = task_logits(model, {**params, **norms[max(step - 1, 0)]}, query[0],
                                 config.adapt)
            accuracy.append(accuracy_per_task(logits, query[1]).cpu().numpy())
            loss.append(cross_entropy_per_task(logits, query[1]).cpu().numpy())
    return np.stack(accuracy, axis=1), np.stack(loss, axis=1)


def heldout_curves(model: nn.Module, rates, config, images: Tensor, num_tasks: int, steps: int,
                   seed: int, chunk: int = 50, device: torch.device | None = None,
                   later_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``adaptation_curves`` on ``num_tasks`` tasks of ``images``, ``chunk`` tasks at a time.

    Same seed, same tasks, same result. Returns (accuracy, loss), each (num_tasks, steps + 1).
    """
    rng = np.random.default_rng(seed)
    accuracy, loss = [], []
    for start in range(0, num_tasks, chunk):
        count = min(chunk, num_tasks - start)
        support, query = sample_fewshot(rng, images, count, config.ways, config.shots,
                                        config.query_shots)
        if device is not None:
            support = tuple(t.to(device) for t in support)
            query = tuple(t.to(device) for t in query)
        acc, ce = adaptation_curves(model, rates, config, support, query, steps, later_factor)
        accuracy.append(acc)
        loss.append(ce)
    return np.concatenate(accuracy), np.concatenate(loss)


def evaluate_fewshot(run_dir: str | Path, steps: int | None = None, num_tasks: int = 600,
                     seed: int = 12345, checkpoint: str = "checkpoint.pt",
                     inner_lr: float | None = None, later_factor: float = 1.0) -> dict:
    """Query accuracy after 0..steps inner steps on held-out N-way K-shot tasks.

    steps: default the config's ``eval_inner_steps`` (the paper's test steps).
    The held-out classes: Omniglot's test characters, MiniImageNet's ``eval_split``.
    """
    from metarl.runs import resolve_device
    from metarl.supervised.datasets import load_classes
    from metarl.supervised.train import load_learner

    config, state = load_run(run_dir, checkpoint)
    config = with_inner_lr(config, inner_lr)
    steps = config.eval_inner_steps if steps is None else steps
    images = load_classes(config, "eval").images
    model, rates = load_learner(run_dir, config, state)
    device = resolve_device(config.device)
    model.to(device)
    if rates is not None:
        rates.to(device)
    accuracy, loss = heldout_curves(model, rates, config, images, num_tasks, steps, seed,
                                    device=device, later_factor=later_factor)
    stats = [mean_ci95(accuracy[:, s]) for s in range(steps + 1)]
    return {"run_dir": str(run_dir), "kind": config.kind, "method": config.method,
            "dataset": f"{config.dataset} {config.ways}-way {config.shots}-shot",
            "checkpoint": checkpoint, "iteration": int(state["iteration"]), "tasks": num_tasks,
            "query_shots": config.query_shots, "inner_lr": config.inner_lr,
            "later_factor": later_factor, "seed": seed,
            "metric": "accuracy",
            "curve": {"steps": list(range(steps + 1)), "mean": [m for m, _ in stats],
                      "ci95": [c for _, c in stats]},
            "loss": [float(v) for v in loss.mean(axis=0)],
            "per_task": accuracy.tolist()}
