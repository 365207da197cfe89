"""Supervised meta-training loop (MAML, first-order MAML, Meta-SGD, ANIL, Reptile).

Reads top to bottom: set up the run, restore a checkpoint if resuming, then
per iteration sample a meta-batch, compute the meta-objective, step the outer
optimiser, log and checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.checkpoint import restore_rng, rng_state
from metarl.distributed import SINGLE_PROCESS, Shard
from metarl.functional import params_of
from metarl.meta import MetaSGDRates, StepParams, TaskRates
from metarl.models import MLP, Conv4
from metarl.runs import Run, TrainingLoop, setup_torch
from metarl.supervised import sinusoid
from metarl.supervised.classify import per_task_mode
from metarl.supervised.meta_step import meta_loss, mse_per_task, reptile_direction


def build_model(config) -> torch.nn.Module:
    """The learner of a supervised config: sinusoid MLP 1 -> hidden -> 1; few-shot Conv4."""
    if config.kind == "fewshot":
        arch = config.architecture()
        channels = 1 if config.dataset == "omniglot" else 3
        return Conv4(channels, config.ways, arch["filters"], arch["pool"], arch["image_size"])
    return MLP(1, 1, tuple(config.hidden_sizes), config.activation)


def build_learner(config) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Model and its learned inner meta-parameters (Meta-SGD's or task-adaptive MAML's
    rates, MAML++'s per-step ones; else None); seeded from the run seed."""
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.method == "metasgd":
        return model, MetaSGDRates(model, config.inner_lr)
    if config.kind == "fewshot" and (config.per_step_batch_norm or config.learned_step_rates):
        return model, StepParams(model, config.inner_steps, config.inner_lr,
                                 config.per_step_batch_norm, config.learned_step_rates)
    if config.method == "tamaml":
        per_task = per_task_mode(config.adapt) if config.kind == "fewshot" else "native"
        return model, TaskRates(model, config.inner_lr, per_task)
    return model, None


def to_device(batch, device):
    return tuple(tuple(t.to(device) for t in part) for part in batch)


def task_block(batch, block: slice):
    """This process's tasks of a meta-batch ((x, y) pairs of (T, ...) tensors)."""
    return tuple(tuple(t[block] for t in part) for part in batch)


@dataclass
class MetaLearner:
    """What a supervised outer loop updates and checkpoints: the model, Meta-SGD's
    rates, the Adam optimiser over both, and the task generator."""

    model: torch.nn.Module
    rates: MetaSGDRates | TaskRates | StepParams | None
    modules: torch.nn.ModuleList
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator

    @classmethod
    def create(cls, config, device: torch.device, start_state: dict | None) -> MetaLearner:
        """Fresh from the run seed, or restored from a checkpoint's ``start_state``."""
        model, rates = build_learner(config)
        modules = torch.nn.ModuleList([model] + ([rates] if rates is not None else []))
        modules.to(device)
        optimizer = torch.optim.Adam(modules.parameters(), lr=config.outer_lr)
        rng = np.random.default_rng(config.seed)
        if start_state is not None:
            modules.load_state_dict(start_state["model"])
            optimizer.load_state_dict(start_state["optimizer"])
            restore_rng(start_state["rng"], rng)
        return cls(model, rates, modules, optimizer, rng)

    def save(self, run: Run, shard: Shard, iteration: int) -> None:
        """Checkpoint (rank 0 writes), after checking every process agrees."""
        shard.check_identical(dict(self.modules.named_parameters()))
        run.save({"iteration": iteration, "model": self.modules.state_dict(),
                  "optimizer": self.optimizer.state_dict(), "rng": rng_state(self.rng)})


def train(config, run_dir: str | Path, resume: bool = False, progress: bool = True,
          shard: Shard = SINGLE_PROCESS) -> dict:
    """Meta-train ``config`` into ``run_dir``; returns the final logged metrics.

    shard: this process's place under torchrun (``metarl.distributed``): every
    process draws the whole meta-batch and keeps its block of tasks; gradients
    are summed over processes, so all take the same optimiser step.
    """
    block = shard.tasks(config.meta_batch_size)
    weight = shard.weight(config.meta_batch_size)
    run = Run(run_dir, config, resume, writes=shard.is_main)
    device = setup_torch(config)
    learner = MetaLearner.create(config, device, run.start_state)
    model, rates, meta_modules = learner.model, learner.rates, learner.modules
    optimizer, rng = learner.optimizer, learner.rng

    metrics: dict[str, float] = {}
    tick = time.perf_counter()
    with TrainingLoop(run, config, shard, progress, "meta-train") as loop:
        for iteration in loop:
            batch = sinusoid.sample_batch(rng, config, config.meta_batch_size)
            support, query = to_device(task_block(batch, block), device)
            params = params_of(model)
            optimizer.zero_grad(set_to_none=True)
            if config.method == "reptile":
                grads, loss = reptile_direction(model, mse_per_task, params, support, query,
                                                config.inner_lr, config.inner_steps)
                for name, p in params.items():
                    p.grad = weight * grads[name]
            else:
                loss = meta_loss(config.method, model, mse_per_task, params, support, query,
                                 config.inner_lr, config.inner_steps, rates)
                (weight * loss).backward()
            if shard.world_size > 1:  # the mean over all tasks: sum the weighted shares
                shard.sum_gradients(meta_modules.parameters())
                loss = shard.all_reduce(weight * loss.detach())
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(meta_modules.parameters(), config.grad_clip)
            optimizer.step()

            if loop.log_due(iteration + 1):
                with torch.no_grad():
                    before = mse_per_task(model, params_of(model), query).mean().item()
                before = shard.sum_floats(weight * before)[0]
                seconds = (time.perf_counter() - tick) / config.log_every
                metrics = {"loss/query_after_adaptation": loss.item(),
                           "loss/query_before_adaptation": before,
                           "time/seconds_per_iteration": seconds}
                run.log(iteration + 1, metrics)
                loop.bar.set_postfix(loss=f"{loss.item():.3f}")
                tick = time.perf_counter()
            loop.end(iteration + 1, lambda done: learner.save(run, shard, done))
    loop.finish({"final/" + k.split("/")[-1]: v for k, v in metrics.items()})
    return metrics


def load_learner(run_dir: str | Path, config, state: dict[str, Any]):
    """Model (and Meta-SGD rates) of a run, with its checkpointed meta-parameters."""
    model, rates = build_learner(config)
    modules = torch.nn.ModuleList([model] + ([rates] if rates is not None else []))
    modules.load_state_dict(state["model"])
    return model, rates
