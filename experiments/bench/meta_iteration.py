"""Seconds per MAML-TRPO meta-iteration, split into its phases, before and after the
fast outer step, measured in one run.

For 2D navigation (``navigation-2d.yaml``, the paper's settings) and
HalfCheetahVel at the widely used 100-step horizon (meta-batch 40 x 20
episodes), real meta-iterations (the training loop's own functions) for:

- ``before``: the outer step as it was: Fisher products by double backward
  (``fisher_backend: autograd``, bit-identical to the earlier code) and glibc's
  default allocator settings;
- ``structured``: the structured product and ``runs.keep_freed_memory``;
- ``K-FAC, 5 CG``: the same with K-FAC-preconditioned CG stopped at 5 iterations;
- ``bfloat16``: ``structured`` with the Fisher products in bfloat16 (``fisher_dtype``).

Each variant runs in its own process (the allocator setting is per process),
alternated over ``--rounds`` so that drift of the machine cancels; printed:
mean seconds per phase, system time and minor page faults per iteration, and
each variant's speed-up over ``before``.

    python experiments/bench/meta_iteration.py [--threads 1] [--iterations 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np
import torch

from metarl.config import load_config
from metarl.rl.families import make_family
from metarl.rl.maml_trpo import clock, meta_update, sample_meta_batch
from metarl.rl.train import build_policy, make_env
from metarl.runs import keep_freed_memory, resolve_device

CASES = {
    "navigation": ("experiments/configs/navigation-2d.yaml", []),
    "halfcheetah": ("experiments/configs/halfcheetah-vel.yaml", ["horizon=100"]),
}
VARIANTS = {"before": (["fisher_backend=autograd"], False),
            "structured": (["fisher_backend=structured"], True),
            "K-FAC, 5 CG": (["fisher_backend=structured", "cg_preconditioner=kfac",
                             "cg_iters=5"], True),
            "bfloat16": (["fisher_backend=structured", "fisher_dtype=bfloat16"], True)}
PHASES = ["time/sampling", "time/adaptation", "time/gradient", "time/cg", "time/line_search"]


def seconds_per_phase(config_path: str, overrides: list[str], iterations: int) -> dict:
    """Mean seconds per phase, system seconds and minor faults per iteration, over
    ``iterations`` meta-iterations after one warm-up, on the config's ``device``."""
    config = load_config(config_path, overrides)
    family = make_family(config)
    rng = np.random.default_rng(0)
    env = make_env(family, config, rng)
    device = resolve_device(config.device)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    policy.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    totals: dict[str, float] = {}
    for i in range(iterations + 1):
        if i == 1:  # the first iteration warms up allocators and caches
            usage = resource.getrusage(resource.RUSAGE_SELF)
        env.set_tasks(family.sample_tasks(rng, config.meta_batch_size))
        tick = clock(device)
        batch, stats = sample_meta_batch(env, policy, config, [2 * i, 2 * i + 1], generator)
        stats.update(meta_update(policy, batch, config))
        stats["total"] = clock(device) - tick
        if i > 0:
            for key in [*PHASES, "total"]:
                totals[key] = totals.get(key, 0.0) + stats[key] / iterations
    end = resource.getrusage(resource.RUSAGE_SELF)
    totals["system"] = (end.ru_stime - usage.ru_stime) / iterations
    totals["faults"] = (end.ru_minflt - usage.ru_minflt) / iterations
    env.close()
    return totals


def run_variant(case: str, variant: str, threads: int, iterations: int) -> dict:
    """One variant in a fresh process: its allocator state is its own."""
    command = [sys.executable, __file__, "--child", case, variant, str(threads), str(iterations)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child(case: str, variant: str, threads: int, iterations: int) -> None:
    torch.set_num_threads(threads)
    overrides, keep = VARIANTS[variant]
    if keep:
        keep_freed_memory()
    path, extra = CASES[case]
    print(json.dumps(seconds_per_phase(
        path, [f"threads={threads}", "device=cpu", *extra, *overrides], iterations)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, variant, threads, iterations = args.child
        return child(case, variant, int(threads), int(iterations))
    for case, (path, overrides) in CASES.items():
        if args.only and case != args.only:
            continue
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):  # A B C A B C: drift cancels
            for variant in VARIANTS:
                runs[variant].append(run_variant(case, variant, args.threads, args.iterations))
        results = {v: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                   for v, rs in runs.items()}
        print(f"{case} ({path} {' '.join(overrides)}), {args.threads} thread(s), mean of "
              f"{args.rounds} x {args.iterations} iterations after a warm-up each:")
        print(f"  {'seconds':18s}" + "".join(f"{label:>14s}" for label in results))
        for key in [*PHASES, "total", "system"]:
            print(f"  {key.removeprefix('time/'):18s}"
                  + "".join(f"{r[key]:14.3f}" for r in results.values()))
        print(f"  {'minor faults':18s}" + "".join(f"{r['faults']:14.0f}" for r in results.values()))
        before = results["before"]["total"]
        print(f"  {'speed-up':18s}" + "".join(f"{before / r['total']:13.2f}x"
                                              for r in results.values()))
        print(f"  {'system share':18s}" + "".join(f"{r['system'] / r['total']:14.1%}"
                                                  for r in results.values()))


if __name__ == "__main__":
    main()
