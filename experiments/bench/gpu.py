"""Seconds per MAML-TRPO meta-iteration on every device present, measured in one run.

The one-command GPU benchmark: 2D navigation (``navigation-2d.yaml``; also with
``fisher_dtype: bfloat16``) and HalfCheetahVel (``halfcheetah-vel.yaml``, 40 tasks x 20
episodes x 200 steps), the paper's settings, real meta-iterations
(``meta_iteration.seconds_per_phase``) on ``cpu`` and, when one is present, ``cuda``,
each in its own process. Printed per case: seconds per phase on each device and the
cpu/cuda ratio; the device's fp32 matmul rate measured in the same run; and the floor,
the meta-iteration's matmul FLOPs (counted by ``torch.utils.flop_counter`` over one real
iteration) at that rate.

Where the work runs: navigation on device tensors on cuda (``vectorization: torch``,
chosen automatically there), numpy on cpu; HalfCheetah's physics is C MuJoCo on the
CPU on either device (``halfcheetah``), or MuJoCo Warp on the GPU (``halfcheetah-warp``:
GPU only, and only where ``pip install -e ".[warp]"`` was done); the policy is on the
device. On a GPU machine with a fresh install it should take 3-5 minutes (never yet
measured on one).

    python experiments/bench/gpu.py [--iterations 2] [--threads N] [--only navigation]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
from meta_iteration import PHASES, seconds_per_phase
from torch.utils.flop_counter import FlopCounterMode

from metarl.config import load_config
from metarl.rl.families import make_family
from metarl.rl.maml_trpo import clock, meta_update, sample_meta_batch
from metarl.rl.train import build_policy, make_env
from metarl.runs import keep_freed_memory

CASES = {"navigation": ("experiments/configs/navigation-2d.yaml", []),
         # the outer step's conjugate gradient on bfloat16 Fisher products
         "navigation-bf16": ("experiments/configs/navigation-2d.yaml",
                             ["fisher_dtype=bfloat16"]),
         "halfcheetah": ("experiments/configs/halfcheetah-vel.yaml", []),
         # GPU only (on the CPU Warp is ~10x slower than C MuJoCo), where installed.
         "halfcheetah-warp": ("experiments/configs/halfcheetah-vel.yaml",
                              ["env_kwargs={physics: warp}"])}


def matmul_rate(device: torch.device, n: int) -> float:
    """fp32 FLOP/s of an n x n matmul on ``device`` (best of 5 after a warm-up)."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    best = float("inf")
    for i in range(6):
        tick = clock(device)
        for _ in range(4):
            a @ b
        seconds = (clock(device) - tick) / 4
        best = min(best, seconds) if i else best
    return 2 * n**3 / best


def _inplace_baddbmm_flops(bias, a, b, *args, out_shape=None, **kwargs) -> int:
    return 2 * a[0] * a[1] * a[2] * b[2]  # torch's counter knows baddbmm, not baddbmm_


def matmul_flops(path: str, overrides: list[str]) -> float:
    """Matmul FLOPs of one meta-iteration (sampling, adaptation, outer step). For one
    structured Fisher product this count equals ``fisher_product.structured_flops``."""
    config = load_config(path, overrides)
    family = make_family(config)
    rng = np.random.default_rng(0)
    env = make_env(family, config, rng)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    generator = torch.Generator().manual_seed(0)
    inplace = {torch.ops.aten.baddbmm_: _inplace_baddbmm_flops}
    with FlopCounterMode(display=False, custom_mapping=inplace) as counter:
        batch, _ = sample_meta_batch(env, policy, config, [0, 1], generator)
        meta_update(policy, batch, config)
    env.close()
    return float(counter.get_total_flops())


def describe(case: str, device: str) -> str:
    navigation = "numpy arrays" if device == "cpu" else "torch tensors on the GPU"
    env = {"navigation": navigation, "navigation-bf16": navigation,
           "halfcheetah": "C MuJoCo (mujoco.batch) on the CPU",
           "halfcheetah-warp": "MuJoCo Warp on the GPU (CUDA graph per control step)"}[case]
    return f"{case}: physics {env}, policy and outer step on {device}"


def devices_for(case: str) -> list[str]:
    if not torch.cuda.is_available():
        return [] if case == "halfcheetah-warp" else ["cpu"]
    if case == "halfcheetah-warp":
        try:
            import mujoco_warp  # noqa: F401
        except ImportError:
            print("\nhalfcheetah-warp: skipped, mujoco-warp not installed "
                  "(pip install -e \".[warp]\")")
            return []
        return ["cuda"]
    return ["cpu", "cuda"]


def child(case: str, device: str, threads: int, iterations: int) -> None:
    torch.set_num_threads(threads)
    keep_freed_memory()
    path, extra = CASES[case]
    overrides = [f"device={device}", f"threads={threads}", *extra]
    result = seconds_per_phase(path, overrides, iterations)
    result["matmul_rate"] = matmul_rate(torch.device(device), 4096 if device == "cuda" else 1024)
    if device == "cpu" or case == "halfcheetah-warp":  # the same FLOPs on every device
        result["flops"] = matmul_flops(path, [o for o in overrides if "physics" not in o
                                          and not o.startswith("device=")] + ["device=cpu"])
    print(json.dumps(result))


def run_child(case: str, device: str, threads: int, iterations: int) -> dict:
    command = [sys.executable, __file__, "--child", case, device, str(threads), str(iterations)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, device, threads, iterations = args.child
        return child(case, device, int(threads), int(iterations))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none present"
    print(f"torch {torch.__version__}, CPU {platform.processor() or platform.machine()} "
          f"({args.threads} threads), GPU: {gpu}")
    started = time.perf_counter()
    for case in CASES:
        if args.only and case != args.only:
            continue
        devices = devices_for(case)
        if not devices:
            continue
        results = {device: run_child(case, device, args.threads, args.iterations)
                   for device in devices}
        flops = results[devices[0]]["flops"]  # counted on the CPU
        path, extra = CASES[case]
        print(f"\n{case} ({' '.join([path, *extra])}): mean of {args.iterations} "
              f"meta-iterations after a warm-up; {flops / 1e9:.1f} GFLOP of matmuls each")
        for device in devices:
            print(f"  {describe(case, device)}")
        print(f"  {'seconds':22s}" + "".join(f"{d:>12s}" for d in devices)
              + ("       cpu / cuda" if len(devices) > 1 else ""))
        for key in [*PHASES, "total"]:
            values = [results[d][key] for d in devices]
            ratio = f"{values[0] / values[1]:16.2f}x" if len(values) > 1 else ""
            print(f"  {key.removeprefix('time/'):22s}" + "".join(f"{v:12.3f}" for v in values)
                  + ratio)
        for device in devices:
            rate, total = results[device]["matmul_rate"], results[device]["total"]
            print(f"  {device}: matmul {rate / 1e9:.0f} GFLOP/s; floor {flops / rate:.3f} s, "
                  f"the iteration is {total * rate / flops:.1f}x it", flush=True)
    if not torch.cuda.is_available():
        print("\nno GPU present: the cuda column and MuJoCo Warp are unmeasured")
    print(f"\nbenchmark wall-clock {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
