"""Fisher-vector products through the adaptation on real meta-batches, against the
hardware floor and against each other, measured in one run; then how good a TRPO
step conjugate gradient finds with each preconditioner.

For 2D navigation (paper settings), HalfCheetahVel (H 100, 40 x 20) and, with
``--only navigation-512``, navigation with Meta-World's 512-512 tanh policy: one
real meta-batch, then seconds per product J^T F' J v by

- ``structured`` (rl.mlp_fisher, fisher_backend: structured), on slices of a few
  tasks' whole episodes (``rl.episode_slices``: ``SLICE_STEPS`` steps, ``TASK_STEPS``
  per task), the same in bfloat16 (``fisher_dtype: bfloat16``), at other slice
  sizes, on slices of all tasks (``all tasks``, the product
  before slicing over tasks) and on the whole batch at once (``unsliced``),
- ``autograd`` (double backward, the product before it; fisher_backend: autograd),
- ``third order`` (differentiating the KL's gradient through the adaptation),

and the floor: the structured product's matmul FLOPs at the rate this machine's
bmm reaches at the batch's largest layer shape, measured just before. Then the
predicted improvement of the TRPO step (-g . s, s scaled to the KL bound with the
exact product) as a share of the best one (the exact natural gradient, by 100
preconditioned CG iterations), for plain CG and K-FAC-preconditioned CG.

    python experiments/bench/fisher_product.py [--only navigation] [--threads 1]
    python experiments/bench/fisher_product.py --only navigation-512 --no-quality  # 512 wide
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metarl.config import load_config
from metarl.functional import call, detach_params, flatten, params_of
from metarl.rl import episode_slices
from metarl.rl.adaptation import adapt_through
from metarl.rl.families import make_family
from metarl.rl.fisher import make_fisher_product, third_order_product
from metarl.rl.kfac import kfac_preconditioner
from metarl.rl.losses import inner_loss, mean_kl, surrogate_loss
from metarl.rl.maml_trpo import sample_meta_batch
from metarl.rl.mlp_fisher import Buffers, PolicyFisher, mlp_layout
from metarl.rl.train import build_policy, make_env
from metarl.rl.trpo import conjugate_gradient, flat_gradient
from metarl.runs import keep_freed_memory

CASES = {
    "navigation": ("experiments/configs/navigation-2d.yaml", []),
    "halfcheetah": ("experiments/configs/halfcheetah-vel.yaml", ["horizon=100"]),
    # Meta-World's policy width (metaworld-*.yaml: 512-512 tanh) on a quarter of navigation's
    # batch (the whole one: its third-order reference took over 10 GB)
    "navigation-512": ("experiments/configs/navigation-2d.yaml",
                       ["hidden_sizes=[512, 512]", "activation=tanh", "episodes_per_task=5"]),
}

DEFAULT_CASES = ("navigation", "halfcheetah")  # navigation-512 with --only (its third-order
# reference takes minutes)

SLICE_SIZES = [2048, 4096, 8192, 16384]  # steps per slice


def seconds(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def interleaved_medians(products: dict, vector, rounds: int) -> dict[str, float]:
    """Median seconds per product, the products taking turns round by round, so that
    drift of a shared machine hits all alike (after one warm-up call each)."""
    samples: dict[str, list[float]] = {key: [] for key in products}
    for _ in range(rounds + 1):
        for key, product in products.items():
            start = time.perf_counter()
            product(vector)
            samples[key].append(time.perf_counter() - start)
    return {key: float(np.median(s[1:])) for key, s in samples.items()}


def bmm_rate(tasks: int, rows: int, width: int, dtype=torch.float32) -> float:
    """FLOP/s of (tasks, rows, width) @ (tasks, width, width) into a reused output."""
    a, b = torch.randn(tasks, rows, width, dtype=dtype), torch.randn(tasks, width, width,
                                                                     dtype=dtype)
    out = torch.empty(tasks, rows, width, dtype=dtype)
    return 2 * tasks * rows * width * width / seconds(lambda: torch.bmm(a, b, out=out), 20)


def structured_flops(policy, tasks: int, rows: int, inner_steps: int) -> float:
    """Matmul FLOPs of one structured J^T F' J v: per layer 2 T N in out times
    6 (2 for the first layer) per inner Hessian product, 2 per step and direction,
    and 4 (2) for the Fisher."""
    layers = policy.mean.layers if hasattr(policy, "mean") else policy.logits.layers
    total = 0.0
    for i, layer in enumerate(layers):
        size = 2 * tasks * rows * layer.in_features * layer.out_features
        total += size * ((6 if i else 2) * 2 * inner_steps + (4 if i else 2))
    return total


def step_quality(grad, product, directions: dict, max_kl: float) -> dict[str, float]:
    """Predicted improvement -g . s of each direction scaled to 0.5 s^T F s = max_kl,
    as a share of the best, sqrt(2 max_kl g^T F^-1 g) (the first direction's)."""
    def improvement(direction):
        return (-(grad @ direction) * torch.sqrt(2 * max_kl / (direction @ product(direction))))
    best = improvement(directions["exact"])
    return {name: (improvement(d) / best).item() for name, d in directions.items()}


def run_case(name: str, path: str, overrides: list[str], threads: int, quality: bool) -> None:
    config = load_config(path, [f"threads={threads}", *overrides])
    family = make_family(config)
    env = make_env(family, config, np.random.default_rng(0))
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    generator = torch.Generator().manual_seed(0)
    env.set_tasks(family.sample_tasks(np.random.default_rng(1), config.meta_batch_size))
    batch, _ = sample_meta_batch(env, policy, config, [1, 2], generator)
    env.close()
    meta = detach_params(params_of(policy))
    valid, tasks = batch.valid, batch.valid.num_tasks
    rows = valid.episodes_per_task * valid.horizon
    loss = inner_loss(config.inner_objective)
    old = call(policy, batch.valid_params, valid.obs)
    kl = lambda p: mean_kl(old, call(policy, adapt_through(policy, p, batch.train, loss,
                                                            config.inner_lr, False), valid.obs),
                           valid.mask)
    products, setup = {}, {}
    default = episode_slices.SLICE_STEPS, episode_slices.TASK_STEPS
    horizon = valid.horizon
    all_tasks = max(1, default[0] // (tasks * horizon)) * horizon  # per task, all tasks a slice
    for key, backend, slicing, dtype in [
            ("structured", "structured", default, "float32"),
            ("  bfloat16", "structured", default, "bfloat16"),
            *[(f"  slices {n}", "structured", (n, default[1]), "float32")
              for n in SLICE_SIZES if n != default[0]],
            ("  all tasks", "structured", (tasks * all_tasks, all_tasks), "float32"),
            ("  unsliced", "structured", (10 ** 12, 10 ** 12), "float32"),
            ("autograd", "autograd", default, "float32")]:
        config.fisher_backend, config.fisher_dtype = backend, dtype
        # read when the product is built
        episode_slices.SLICE_STEPS, episode_slices.TASK_STEPS = slicing
        build = lambda: make_fisher_product(policy, meta, batch.train, batch.iterates, valid,
                                            config, kl)
        setup[key] = seconds(build, 1)
        products[key] = build()
    episode_slices.SLICE_STEPS, episode_slices.TASK_STEPS = default
    config.fisher_dtype = "float32"
    setup["third order"] = seconds(lambda: third_order_product(kl, meta), 1)
    products["third order"] = third_order_product(kl, meta)
    v = torch.randn(flatten(meta).numel(), generator=torch.Generator().manual_seed(0))
    times = interleaved_medians(products, v, rounds=7)
    width = max(layer.out_features for layer in policy.mean.layers[:-1])
    rate = bmm_rate(tasks, rows, width)
    floor = structured_flops(policy, tasks, rows, len(batch.train)) / rate
    low_rate = bmm_rate(tasks, rows, width, torch.bfloat16)
    reference = products["third order"](v)
    print(f"{name} ({path} {' '.join(overrides)}): {tasks} tasks x {rows} steps, policy "
          f"{config.hidden_sizes} {config.activation}, {threads} thread(s)")
    print(f"  bmm ({tasks}, {rows}, {width}) @ ({tasks}, {width}, {width}): "
          f"{rate / 1e9:.0f} GFLOP/s; structured product "
          f"{structured_flops(policy, tasks, rows, len(batch.train)) / 1e9:.2f} GFLOP, "
          f"floor {floor:.3f} s; in bfloat16 {low_rate / 1e9:.0f} GFLOP/s, floor "
          f"{floor * rate / low_rate:.3f} s")
    for key in products:
        error = ((products[key](v) - reference).norm() / reference.norm()).item()
        print(f"  {key:14s} {times[key]:7.3f} s per product ({times[key] / floor:5.2f}x the floor,"
              f" {times[key] / times['structured']:5.2f}x structured), setup {setup[key]:6.3f} s,"
              f" relative difference to third order {error:.1e}")
    if not quality:
        return
    config.fisher_backend = "structured"
    _, grad = flat_gradient(lambda p: surrogate_loss(
        policy, adapt_through(policy, p, batch.train, loss, config.inner_lr, False), valid,
        batch.valid_advantages, batch.valid_log_probs), meta)
    product = products["structured"]
    damped = lambda x: product(x) + config.cg_damping * x
    tick = time.perf_counter()
    fisher = PolicyFisher(mlp_layout(policy), batch.valid_params, valid, Buffers())
    kfac = kfac_preconditioner(fisher, meta, config.kfac_damping)
    kfac_seconds = time.perf_counter() - tick
    directions = {"exact": conjugate_gradient(damped, -grad, 100, 0.0, kfac)[0]}
    for iters in [5, 10, 20]:
        directions[f"plain CG {iters}"] = conjugate_gradient(damped, -grad, iters)[0]
        directions[f"K-FAC CG {iters}"] = conjugate_gradient(damped, -grad, iters, 0.0, kfac)[0]
    shares = step_quality(grad, product, directions, config.max_kl)
    print(f"  TRPO step, share of the best predicted improvement (K-FAC damping "
          f"{config.kfac_damping}, built in {kfac_seconds:.3f} s):")
    print("    " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if k != "exact"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--no-quality", action="store_true", help="skip the CG comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    for name, (path, overrides) in CASES.items():
        if name == args.only or (not args.only and name in DEFAULT_CASES):
            run_case(name, path, overrides, args.threads, not args.no_quality)


if __name__ == "__main__":
    main()
