"""Seconds per MAML-TRPO meta-iteration, split into its phases, measured in one run.

For 2D navigation (``navigation-2d.yaml``, the paper's settings) and
HalfCheetahVel at the widely used 100-step horizon (meta-batch 40 x 20
episodes), runs real meta-iterations (the training loop's own functions) and
prints the mean seconds in sampling, adaptation, meta-gradient, conjugate
gradient (with the Fisher setup) and line search for four Fisher-vector
products: ``fisher: exact`` (metarl's second-order J^T F J) on all validation
episodes and on 25% of them (the locomotion configs' ``fisher_fraction``),
``fisher: adapted`` (no adaptation Jacobian) and the reference
``fisher: autograd`` (differentiating the KL's gradient through the
adaptation, third order, as pytorch-maml-rl does), with the ratios.

    python experiments/bench/meta_iteration.py [--iterations 3] [--threads 2]
    metarl bench meta-iteration --only navigation
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metarl.cli import make_family
from metarl.config import load_config
from metarl.rl.maml_trpo import meta_update, sample_meta_batch
from metarl.rl.train import build_policy, make_env

CASES = {
    "navigation": ("experiments/configs/navigation-2d.yaml", []),
    "halfcheetah": ("experiments/configs/halfcheetah-vel.yaml", ["horizon=100"]),
}
# All on every validation episode, except "exact, 25%" (the locomotion configs' choice).
VARIANTS = {"exact": ["fisher=exact", "fisher_fraction=1"],
            "exact, 25%": ["fisher=exact", "fisher_fraction=0.25"],
            "adapted": ["fisher=adapted", "fisher_fraction=1"],
            "autograd": ["fisher=autograd", "fisher_fraction=1"]}
PHASES = ["time/sampling", "time/adaptation", "time/gradient", "time/cg", "time/line_search"]


def seconds_per_phase(config_path: str, overrides: list[str], iterations: int) -> dict:
    """Mean seconds per phase over ``iterations`` meta-iterations after one warm-up."""
    config = load_config(config_path, overrides)
    family = make_family(config)
    rng = np.random.default_rng(0)
    env = make_env(family, config, rng)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    generator = torch.Generator().manual_seed(0)
    totals: dict[str, float] = {}
    for i in range(iterations + 1):
        env.set_tasks(family.sample_tasks(rng, config.meta_batch_size))
        tick = time.perf_counter()
        batch, stats = sample_meta_batch(env, policy, config, [2 * i, 2 * i + 1], generator)
        stats.update(meta_update(policy, batch, config))
        stats["total"] = time.perf_counter() - tick
        if i > 0:  # the first iteration warms up allocators and caches
            for key in [*PHASES, "total", "trpo/line_search_steps"]:
                totals[key] = totals.get(key, 0.0) + stats[key] / iterations
    env.close()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=sorted(CASES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, (path, overrides) in CASES.items():
        if args.only and name != args.only:
            continue
        results = {label: seconds_per_phase(path, [f"threads={args.threads}", *overrides,
                                                    *extra], args.iterations)
                   for label, extra in VARIANTS.items()}
        print(f"{name} ({path} {' '.join(overrides)}), {args.threads} threads, "
              f"mean of {args.iterations} iterations after a warm-up:")
        print(f"  {'seconds':18s}" + "".join(f"{label:>18s}" for label in results))
        for key in [*PHASES, "total"]:
            print(f"  {key.removeprefix('time/'):18s}"
                  + "".join(f"{r[key]:18.3f}" for r in results.values()))
        print(f"  {'line-search steps':18s}"
              + "".join(f"{r['trpo/line_search_steps']:18.1f}" for r in results.values()))
        exact, reference = results["exact"], results["autograd"]
        print(f"  exact vs the third-order reference: whole iteration "
              f"{reference['total'] / exact['total']:.2f}x, conjugate gradient "
              f"{reference['time/cg'] / exact['time/cg']:.2f}x faster")


if __name__ == "__main__":
    main()
