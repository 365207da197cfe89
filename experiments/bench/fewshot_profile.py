"""Where the second-order few-shot step's time goes, and two convolution rewrites.

1. ``torch.profiler`` over two meta-iterations of ``omniglot-small-20w1s.yaml`` (Conv4,
   20-way 1-shot, meta-batch 16, 5 second-order inner steps, ``adapt: grouped``): the
   ops by self CPU time, after three untimed iterations (compilation, caches) and three
   timed ones without the profiler.
2. Per layer of the stacked grouped convolution (16 tasks x 64 channels, stride 2), the
   forward, the weight gradient and the input gradient (PyTorch's NCHW path and
   ``metarl.conv_ops``'s channels-last one), against two rewrites: the weight gradient
   as ``unfold`` + ``bmm`` and the input gradient as ``matmul`` + ``fold`` (col2im).
   Each rewrite is checked against ``convolution_backward`` first.

    taskset -c 1 python experiments/bench/fewshot_profile.py [--skip-profile]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

# experiments/bench/supervised.py (this folder is on the path when run as a script)
from supervised import conv_meta_step, omniglot_batches, timed

from metarl.config import load_config
from metarl.conv_ops import _input_grad
from metarl.functional import params_of
from metarl.runs import keep_freed_memory
from metarl.supervised.train import build_model

TASKS, FILTERS, IMAGES = 16, 64, 20


def milliseconds(fn) -> float:
    return timed(fn, warm_ups=3) * 1e3


def profile_step() -> None:
    config = load_config("experiments/configs/omniglot-small-20w1s.yaml")
    batches, source = omniglot_batches(config, 8)
    model = build_model(config)
    params = params_of(model)
    for support, query in batches[:3]:
        conv_meta_step("metarl grouped", model, params, support, query, config)
    start = time.perf_counter()
    for support, query in batches[3:6]:
        conv_meta_step("metarl grouped", model, params, support, query, config)
    print(f"data: {source}; {(time.perf_counter() - start) / 3:.3f} s per iteration")
    from torch.profiler import ProfilerActivity, profile
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for support, query in batches[6:8]:
            conv_meta_step("metarl grouped", model, params, support, query, config)
    print(f"profiled: {(time.perf_counter() - start) / 2:.3f} s per iteration")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def weight_grad_by_bmm(grad_out, x):
    """Grouped conv weight gradient (T*64, C, 3, 3) as one bmm over tasks of unfolded x."""
    cols = F.unfold(x, 3, padding=1, stride=2)  # (N, T*C*9, L)
    length, channels = cols.shape[-1], x.shape[1] // TASKS
    cols = cols.view(IMAGES, TASKS, channels * 9, length).permute(1, 2, 0, 3)
    cols = cols.reshape(TASKS, channels * 9, IMAGES * length)
    grads = grad_out.view(IMAGES, TASKS, FILTERS, length).permute(1, 2, 0, 3)
    grads = grads.reshape(TASKS, FILTERS, IMAGES * length)
    return torch.bmm(grads, cols.transpose(1, 2)).reshape(TASKS * FILTERS, channels, 3, 3)


def input_grad_by_fold(grad_out, x, weight):
    """Grouped conv input gradient as per-task matmuls into columns, then col2im."""
    size, channels = x.shape[-1], x.shape[1] // TASKS
    length = grad_out.shape[-1] * grad_out.shape[-2]
    w = weight.view(TASKS, FILTERS, channels * 9).transpose(1, 2)
    cols = torch.matmul(w, grad_out.view(IMAGES, TASKS, FILTERS, length))  # (N, T, C*9, L)
    return F.fold(cols.view(IMAGES, -1, length), (size, size), 3, padding=1, stride=2)


def layer_times(x, w, g) -> dict[str, float]:
    """Milliseconds per call at one layer's shapes; the rewrites checked first."""
    def backward(mask):
        return torch.ops.aten.convolution_backward(g, x, w, [w.shape[0]], [2, 2], [1, 1],
                                                   [1, 1], False, [0, 0], TASKS, mask)

    ref_w, ref_x = backward([False, True, False])[1], backward([True, False, False])[0]
    for name, got, ref in (("unfold+bmm", weight_grad_by_bmm(g, x), ref_w),
                           ("matmul+fold", input_grad_by_fold(g, x, w), ref_x)):
        error = ((got - ref).abs().max() / ref.abs().max()).item()
        assert error < 1e-4, f"{name} differs from convolution_backward: {error:.1e}"
    return {
        "forward": milliseconds(lambda: F.conv2d(x, w, None, 2, 1, 1, TASKS)),
        "weight grad": milliseconds(lambda: backward([False, True, True])),
        "weight grad unfold+bmm": milliseconds(lambda: weight_grad_by_bmm(g, x)),
        "input grad NCHW": milliseconds(lambda: backward([True, False, False])),
        "input grad conv_ops": milliseconds(lambda: _input_grad(g, x, w, [2, 2], [1, 1], TASKS)),
        "input grad matmul+fold": milliseconds(lambda: input_grad_by_fold(g, x, w)),
    }


def layers() -> None:
    for size, channels in ((28, 1), (14, FILTERS), (7, FILTERS), (4, FILTERS)):
        x = torch.randn(IMAGES, TASKS * channels, size, size)
        w = torch.randn(TASKS * FILTERS, channels, 3, 3)
        g = torch.randn_like(F.conv2d(x, w, None, 2, 1, 1, TASKS))
        times = layer_times(x, w, g)
        print(f"input ({IMAGES}, {TASKS}x{channels}, {size}, {size}): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    if not args.skip_profile:
        profile_step()
    layers()


if __name__ == "__main__":
    main()
