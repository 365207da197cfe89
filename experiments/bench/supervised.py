"""Seconds per sinusoid meta-iteration: metarl's batched path vs a per-task loop.

Measured in one run on the same data: (a) metarl's path (stacked per-task
parameters, one batched matmul per layer), (b) ``torch.func.vmap(grad)`` over
tasks, (c) a plain Python loop over tasks with ``torch.autograd.grad``. All
compute the same second-order MAML meta-gradient (checked here too).

    python experiments/bench/supervised.py [--iterations 200] [--meta-batch 25]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from metarl.config import load_config
from metarl.functional import call, params_of
from metarl.meta import adapt, adapt_vmap
from metarl.supervised import sinusoid
from metarl.supervised.meta_step import meta_loss, mse_per_task
from metarl.supervised.train import build_model


def batched_step(model, params, support, query, config):
    loss = meta_loss("maml", model, mse_per_task, params, support, query, config.inner_lr,
                     config.inner_steps)
    return torch.autograd.grad(loss, list(params.values()))


def one_task_loss(model):
    return lambda p, b: F.mse_loss(call(model, p, b[0]), b[1])


def vmap_step(model, params, support, query, config):
    adapted = adapt_vmap(one_task_loss(model), params, support, config.inner_lr,
                         config.inner_steps)
    loss = mse_per_task(model, adapted, query).mean()
    return torch.autograd.grad(loss, list(params.values()))


def loop_step(model, params, support, query, config):
    total = 0.0
    loss_fn = one_task_loss(model)
    for t in range(support[0].shape[0]):
        task_support = (support[0][t], support[1][t])
        adapted = adapt(loss_fn, params, task_support, config.inner_lr, config.inner_steps)
        total = total + loss_fn(adapted, (query[0][t], query[1][t]))
    return torch.autograd.grad(total / support[0].shape[0], list(params.values()))


def seconds_per_iteration(step, model, params, batches, config) -> float:
    for support, query in batches[:5]:  # warm-up
        step(model, params, support, query, config)
    start = time.perf_counter()
    for support, query in batches:
        step(model, params, support, query, config)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--meta-batch", type=int, default=25)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("experiments/configs/sinusoid.yaml",
                         [f"meta_batch_size={args.meta_batch}"])
    model = build_model(config)
    params = params_of(model)
    rng = np.random.default_rng(0)
    batches = [sinusoid.sample_batch(rng, config, args.meta_batch) for _ in range(args.iterations)]

    reference = loop_step(model, params, *batches[0], config)
    for step in (batched_step, vmap_step):
        for a, b in zip(step(model, params, *batches[0], config), reference):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    times = {name: seconds_per_iteration(step, model, params, batches, config)
             for name, step in [("metarl batched", batched_step), ("vmap(grad)", vmap_step),
                                ("per-task loop", loop_step)]}
    print(f"sinusoid MAML, meta-batch {args.meta_batch}, second order, "
          f"{args.iterations} iterations, {args.threads} threads")
    for name, seconds in times.items():
        print(f"  {name:15s} {seconds * 1e3:8.2f} ms/iteration")
    loop = times["per-task loop"]
    print(f"  speed-up over the loop: batched {loop / times['metarl batched']:.1f}x, "
          f"vmap {loop / times['vmap(grad)']:.1f}x")


if __name__ == "__main__":
    main()
