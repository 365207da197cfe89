"""Few-shot classification meta-training (MAML paper, section 5.2), every supervised method.

Reads top to bottom: read and check the data (before anything is written),
set up the run, restore a checkpoint if resuming, then per iteration sample a
meta-batch of N-way K-shot tasks, adapt a copy of Conv4's parameters per task
on its support set (all tasks at once, ``adapt: vmap`` or ``loop``), take the
cross-entropy on the query set as the meta-objective, step the outer optimiser,
log and checkpoint.

Batch norm uses the current batch's statistics in the inner and the outer loop
(support batch in inner steps, query batch for the outer loss), as the
original MAML; there are no running statistics.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from metarl.distributed import SINGLE_PROCESS, Shard
from metarl.functional import params_of
from metarl.meta.maml_plus_plus import multi_step_loss, outer_lr_at, step_loss_weights
from metarl.runs import Run, TrainingLoop, setup_torch
from metarl.supervised.augment import random_distortion
from metarl.supervised.classify import cross_entropy_loss
from metarl.supervised.datasets import load_classes
from metarl.supervised.fewshot import sample_fewshot
from metarl.supervised.fewshot_eval import adaptation_curves
from metarl.supervised.meta_step import meta_loss, reptile_direction
from metarl.supervised.train import MetaLearner, task_block, to_device


def sample_tasks(rng: np.random.Generator, images, config, num_tasks: int):
    """(support, query) pairs x (T, N*K, c, H, W), y (T, N*K) of a config's task shape."""
    return sample_fewshot(rng, images, num_tasks, config.ways, config.shots, config.query_shots)


def sample_training_tasks(rng: np.random.Generator, images, config, num_tasks: int):
    """``sample_tasks``, each image then distorted if the config augments (the draws
    come after the tasks', so a config without augmentation samples as before)."""
    support, query = sample_tasks(rng, images, config, num_tasks)
    if not config.augments():
        return support, query

    def distort(images):
        return random_distortion(rng, images, config.augment_rotation, config.augment_shift,
                                 config.augment_scale)

    return (distort(support[0]), support[1]), (distort(query[0]), query[1])


def meta_gradient(config, model, rates, params, support, query, weight: float = 1.0,
                  iteration: int = 0) -> torch.Tensor:
    """Put ``weight`` times the meta-gradient of one meta-batch in ``.grad``; returns
    the query loss after adaptation (detached, not weighted; MAML++'s multi-step
    loss: its weighted sum). ``iteration`` sets MAML++'s annealed schedules."""
    task_loss = cross_entropy_loss(config.adapt)
    if config.maml_plus_plus():
        weights = step_loss_weights(config.inner_steps, iteration,
                                    config.multi_step_loss_iterations)
        loss = multi_step_loss(model, task_loss, params, support, query, config.inner_lr,
                               weights, rates, iteration < config.first_order_iterations)
        (weight * loss).backward()
        return loss.detach()
    if config.method == "reptile":
        grads, loss = reptile_direction(model, task_loss, params, support, query,
                                        config.inner_lr, config.inner_steps)
        for name, p in params.items():
            p.grad = weight * grads[name]
        return loss
    loss = meta_loss(config.method, model, task_loss, params, support, query, config.inner_lr,
                     config.inner_steps, rates, config.grad_checkpointing)
    (weight * loss).backward()
    return loss.detach()


def batch_metrics(config, model, rates, support, query) -> dict[str, float]:
    """Query loss and accuracy before and after the training inner steps (current params).

    Reptile adapts on the support set here, as at evaluation.
    """
    accuracy, loss = adaptation_curves(model, rates, config, support, query, config.inner_steps)
    return {"loss/query_after_adaptation": float(loss[:, -1].mean()),
            "accuracy/query_after_adaptation": float(accuracy[:, -1].mean()),
            "loss/query_before_adaptation": float(loss[:, 0].mean()),
            "accuracy/query_before_adaptation": float(accuracy[:, 0].mean())}


def train(config, run_dir: str | Path, resume: bool = False, progress: bool = True,
          shard: Shard = SINGLE_PROCESS) -> dict:
    """Meta-train the few-shot ``config`` into ``run_dir``; returns the final logged metrics.

    shard: this process's place under torchrun (``metarl.distributed``): every
    process draws the whole meta-batch and keeps its block of tasks; gradients
    are summed over processes, so all take the same optimiser step.
    """
    block = shard.tasks(config.meta_batch_size)
    weight = shard.weight(config.meta_batch_size)
    device = setup_torch(config)
    images = load_classes(config, "train").images  # data errors before the run dir exists
    run = Run(run_dir, config, resume, writes=shard.is_main)
    learner = MetaLearner.create(config, device, run.start_state)
    model, rates, meta_modules = learner.model, learner.rates, learner.modules
    optimizer, rng = learner.optimizer, learner.rng

    metrics: dict[str, float] = {}
    tick, since = time.perf_counter(), 0
    with TrainingLoop(run, config, shard, progress, "meta-train") as loop:
        for iteration in loop:
            batch = sample_training_tasks(rng, images, config, config.meta_batch_size)
            support, query = to_device(task_block(batch, block), device)
            optimizer.zero_grad(set_to_none=True)
            loss = meta_gradient(config, model, rates, params_of(model), support, query, weight,
                                 iteration)
            shard.sum_gradients(meta_modules.parameters())
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(meta_modules.parameters(), config.grad_clip)
            if config.outer_lr_schedule == "cosine":  # a function of the iteration: resumable
                for group in optimizer.param_groups:
                    group["lr"] = outer_lr_at(iteration, config.iterations, config.outer_lr,
                                              config.min_outer_lr)
            optimizer.step()

            since += 1
            if loop.log_due(iteration + 1):
                seconds = (time.perf_counter() - tick) / since
                # Measured on this meta-batch with the updated parameters (one cheap extra pass).
                local = {**batch_metrics(config, model, rates, support, query),
                         "loss/meta_objective": loss.item()}
                metrics = dict(zip(local, shard.sum_floats(*[weight * v for v in local.values()])))
                metrics["time/seconds_per_iteration"] = seconds
                run.log(iteration + 1, metrics)
                loop.bar.set_postfix(loss=f"{metrics['loss/query_after_adaptation']:.3f}",
                                     acc=f"{metrics['accuracy/query_after_adaptation']:.3f}")
                tick, since = time.perf_counter(), 0
            loop.end(iteration + 1, lambda done: learner.save(run, shard, done))
    loop.finish({"final/" + k.split("/")[-1]: v for k, v in metrics.items()})
    return metrics
