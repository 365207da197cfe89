"""Seconds per supervised meta-iteration: metarl's paths against a plain per-task loop.

Sinusoid, measured in one run on the same data: (a) metarl's path (stacked
per-task parameters, one batched matmul per layer), (b) ``torch.func.vmap(grad)``
over tasks, (c) a plain Python loop over tasks with ``torch.autograd.grad``. All
compute the same second-order MAML meta-gradient (checked here too).

Omniglot 5-way 1-shot, Conv4 (64 strided filters), meta-batch 32, second order:
metarl's default path (``adapt: grouped``), its ``adapt: vmap`` and ``loop``, and a
plain per-task autograd loop, on the same meta-batches (the real data of
``omniglot-small-5w1s.yaml`` when present, else random images: the time does
not depend on the pixels); then peak memory with and without gradient
checkpointing for 5 and 10 inner steps. Each measurement runs in its own
process, one after the other, so that its peak memory is its own: peak RSS
(``resource.getrusage(...).ru_maxrss``) above the RSS after setup (VmRSS).

Omniglot 20-way 1-shot (``--task omniglot20``, the paper's 5 inner steps, meta-batch
16): the default path (``adapt: grouped``, ``metarl.conv_ops`` with batch norm's
kernels compiled) against the same with eager kernels (``METARL_COMPILE=0``), the
default before grouped (vmap) and the loop, and against the floor: the FLOPs of the
convolutions at this machine's grouped-conv forward rate at the same shapes,
and at its matmul rate.

    python experiments/bench/supervised.py [--task sinusoid|omniglot|omniglot20|all] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from metarl.config import load_config
from metarl.functional import call, params_of
from metarl.meta import adapt, adapt_vmap
from metarl.runs import keep_freed_memory
from metarl.supervised import sinusoid
from metarl.supervised.classify import cross_entropy_loss
from metarl.supervised.datasets import load_classes
from metarl.supervised.fewshot import sample_fewshot
from metarl.supervised.images import DataError
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


def sinusoid_bench(args) -> None:
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


def conv_meta_step(path: str, model, params, support, query, config, checkpointing=False):
    """One second-order MAML meta-gradient on Conv4 by one of the measured paths."""
    if path == "per-task loop":
        loss_fn = lambda p, b: F.cross_entropy(call(model, p, b[0]), b[1])
        total = 0.0
        for t in range(support[0].shape[0]):
            adapted = adapt(loss_fn, params, (support[0][t], support[1][t]), config.inner_lr,
                            config.inner_steps)
            total = total + loss_fn(adapted, (query[0][t], query[1][t]))
        loss = total / support[0].shape[0]
    else:
        loss = meta_loss("maml", model, cross_entropy_loss(path.split()[-1]), params, support,
                         query, config.inner_lr, config.inner_steps,
                         grad_checkpointing=checkpointing)
    return torch.autograd.grad(loss, list(params.values()))


def current_rss_kb() -> int:
    """Resident memory now (Linux /proc); the peak so far where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_conv(path, config, batches, threads, checkpointing, queue, compiled=True) -> None:
    """Child process: seconds per meta-iteration and peak RSS growth (MB) of one path.

    Set up as training does (``runs.keep_freed_memory``); ``compiled`` sets
    ``METARL_COMPILE`` (batch norm's kernels in ``metarl.conv_ops``). The first
    iteration, which compiles them (or loads them from torch's disk cache), is timed
    apart as the warm-up.
    """
    os.environ["METARL_COMPILE"] = "1" if compiled else "0"
    torch.set_num_threads(threads)
    keep_freed_memory()
    model = build_model(config)
    params = params_of(model)
    baseline = current_rss_kb()
    start = time.perf_counter()
    conv_meta_step(path, model, params, *batches[0], config, checkpointing)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for support, query in batches[1:]:
        conv_meta_step(path, model, params, support, query, config, checkpointing)
    seconds = (time.perf_counter() - start) / max(len(batches) - 1, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds, (peak - baseline) / 1024, peak / 1024, warm_up))


def in_child(path, config, batches, threads, checkpointing=False, compiled=True):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=measure_conv, args=(path, config, batches, threads,
                                                       checkpointing, queue, compiled))
    child.start()
    result = queue.get()
    child.join()
    return result


def omniglot_batches(config, count: int, seed: int = 0):
    """``count`` meta-batches of the config's tasks: real Omniglot if present, else random."""
    rng = np.random.default_rng(seed)
    try:
        images, source = load_classes(config, "train").images, "Omniglot (small1)"
    except DataError:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (64, 20, 28, 28), dtype=torch.uint8, generator=generator)
        source = "random images (Omniglot data not found)"
    batches = [sample_fewshot(rng, images, config.meta_batch_size, config.ways, config.shots,
                              config.query_shots) for _ in range(count)]
    return batches, source


def omniglot_bench(args) -> None:
    config = load_config("experiments/configs/omniglot-small-5w1s.yaml")
    batches, source = omniglot_batches(config, args.conv_iterations + 1)
    print(f"Omniglot {config.ways}-way {config.shots}-shot, Conv4 64 strided filters, "
          f"meta-batch {config.meta_batch_size}, {config.inner_steps} second-order inner step, "
          f"{args.conv_iterations} iterations, {args.threads} threads, data: {source}")
    model = build_model(config).double()
    params = params_of(model)
    small = [tuple(t[:4].double() if t.is_floating_point() else t[:4] for t in part)
             for part in batches[0]]
    reference = conv_meta_step("per-task loop", model, params, *small, config)
    for path in ("metarl grouped", "metarl vmap", "metarl loop"):  # same meta-gradient, float64
        for a, b in zip(conv_meta_step(path, model, params, *small, config), reference):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    times = {}
    for path in ("metarl grouped", "metarl vmap", "metarl loop", "per-task loop"):
        times[path] = in_child(path, config, batches, args.threads)
        seconds, grown, peak, _ = times[path]
        print(f"  {path:15s} {seconds:7.3f} s/iteration   peak RSS +{grown:6.0f} MB "
              f"({peak:.0f} MB in all)", flush=True)
    loop = times["per-task loop"][0]
    ratios = [f"{path.split()[-1]} {loop / times[path][0]:.2f}x" for path in times
              if path != "per-task loop"]
    print("  speed-up over the per-task loop: " + ", ".join(ratios))
    print("Gradient checkpointing of the inner steps (metarl grouped, "
          f"{args.memory_iterations} iterations each):")
    for steps in (5, 10):
        deep = load_config("experiments/configs/omniglot-small-5w1s.yaml",
                           [f"inner_steps={steps}"])
        for checkpointing in (False, True):
            seconds, grown, peak, _ = in_child("metarl grouped", deep,
                                            batches[:args.memory_iterations + 1], args.threads,
                                            checkpointing)
            print(f"  {steps:2d} steps, checkpointing {'on ' if checkpointing else 'off'}  "
                  f"{seconds:7.3f} s/iteration   peak RSS +{grown:6.0f} MB "
                  f"({peak:.0f} MB in all)", flush=True)


def conv_floor(config, threads: int) -> tuple[float, float, float]:
    """(GFLOP of one meta-iteration's convolutions, seconds at this machine's grouped-conv
    forward rate at the same shapes, seconds at its 1024^3 matmul rate).

    Per image and layer, a second-order meta-iteration with K inner steps runs
    9K + 3 forward-sized convolutions (K inner forwards with weight and input gradients,
    the query's forward and backward, and per inner step the double backward's four and
    the backward through its forward), 4K + 2 for the first layer, whose input (the
    images) needs no gradient.
    """
    torch.set_num_threads(threads)
    steps, tasks, images = config.inner_steps, config.meta_batch_size, config.ways * config.shots
    total = at_conv_rate = 0.0
    channels, size = 1, config.image_size
    for layer in range(4):
        out = (size + 1) // 2
        flops = 2 * config.filters * channels * 9 * out * out * images * tasks
        count = 4 * steps + 2 if layer == 0 else 9 * steps + 3
        x = torch.randn(images, tasks * channels, size, size)
        w = torch.randn(tasks * config.filters, channels, 3, 3)
        seconds = timed(lambda x=x, w=w: F.conv2d(x, w, None, 2, 1, 1, tasks))
        total += count * flops
        at_conv_rate += count * seconds
        channels, size = config.filters, out
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    matmul_rate = 2 * 1024**3 / timed(lambda: a @ b)
    return total / 1e9, at_conv_rate, total / matmul_rate


def timed(fn, repeats: int = 20, warm_ups: int = 1) -> float:
    """Seconds per call of ``fn``, after ``warm_ups`` untimed calls."""
    for _ in range(warm_ups):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def omniglot20_bench(args) -> None:
    """The paper's 20-way 1-shot step: Conv4 5 second-order inner steps, meta-batch 16."""
    config = load_config("experiments/configs/omniglot-small-20w1s.yaml")
    batches, source = omniglot_batches(config, args.conv_iterations + 1)
    print(f"Omniglot {config.ways}-way {config.shots}-shot, Conv4 {config.filters} strided "
          f"filters, meta-batch {config.meta_batch_size}, {config.inner_steps} second-order "
          f"inner steps, {args.conv_iterations} iterations, {args.threads} threads, "
          f"data: {source}")
    variants = {"grouped (default)": ("metarl grouped", True),
                "grouped, eager kernels": ("metarl grouped", False),
                "vmap": ("metarl vmap", False), "loop": ("metarl loop", False)}
    times = {}
    for name, (path, compiled) in variants.items():
        times[name] = in_child(path, config, batches, args.threads, compiled=compiled)
        seconds, grown, peak, warm_up = times[name]
        print(f"  {name:23s} {seconds:7.3f} s/iteration   peak RSS +{grown:6.0f} MB "
              f"({peak:.0f} MB in all); first iteration {warm_up:.1f} s", flush=True)
    new, eager = times["grouped (default)"][0], times["grouped, eager kernels"][0]
    old = times["vmap"][0]
    gflop, at_conv_rate, at_matmul_rate = conv_floor(config, args.threads)
    print(f"  grouped (default) against vmap (the default before grouped): {old / new:.2f}x "
          f"faster; against its eager kernels: {eager / new:.2f}x")
    print(f"  convolution work: {gflop:.1f} GFLOP per iteration; at this machine's grouped-conv "
          f"forward rate at these shapes {at_conv_rate:.3f} s, at its matmul rate "
          f"({gflop / at_matmul_rate:.0f} GFLOP/s) {at_matmul_rate:.3f} s")
    print(f"  grouped takes {new / at_conv_rate:.2f}x the conv-rate floor, "
          f"{new / at_matmul_rate:.2f}x the matmul floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sinusoid", "omniglot", "omniglot20", "all"],
                        default="all")
    parser.add_argument("--iterations", type=int, default=200, help="sinusoid iterations")
    parser.add_argument("--meta-batch", type=int, default=25, help="sinusoid meta-batch")
    parser.add_argument("--conv-iterations", type=int, default=10,
                        help="Omniglot iterations per path")
    parser.add_argument("--memory-iterations", type=int, default=2,
                        help="Omniglot iterations per checkpointing measurement")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task in ("sinusoid", "all"):
        sinusoid_bench(args)
    if args.task in ("omniglot", "all"):
        omniglot_bench(args)
    if args.task in ("omniglot20", "all"):
        omniglot20_bench(args)


if __name__ == "__main__":
    main()
