"""Seconds per HalfCheetahVel meta-iteration with 1 and with P processes (torchrun).

Runs ``metarl train experiments/configs/halfcheetah-vel.yaml`` at the widely
used 100-step horizon (meta-batch 40 x 20 episodes) for a few iterations,
once as one process using every core (torch threads and MuJoCo threads) and
once under ``torchrun --nproc-per-node P`` (each process gets cores / P),
reads the seconds of every iteration from the runs' TensorBoard logs (the
first iteration is a warm-up and not counted) and prints the scaling ratio.

    python experiments/bench/distributed.py [--processes 2] [--iterations 4]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from envs.mujoco.physics import usable_cpus
from metarl.compare import read_scalars

CONFIG = "experiments/configs/halfcheetah-vel.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds_per_iteration(processes: int, iterations: int, run_dir: Path) -> float:
    threads = max(1, usable_cpus() // processes)
    command = ["-m", "metarl", "train", CONFIG, "--run-dir", str(run_dir), "--quiet",
               "--set", "horizon=100", "--set", f"iterations={iterations}",
               "--set", f"threads={threads}"]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                   "--master-port", str(free_port()), *command]
    subprocess.run([sys.executable, *command], check=True, stdout=subprocess.DEVNULL)
    _, seconds = read_scalars(run_dir, "time/iteration")
    return float(np.mean(seconds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = seconds_per_iteration(1, args.iterations, Path(tmp) / "one")
        many = seconds_per_iteration(args.processes, args.iterations, Path(tmp) / "many")
    print(f"HalfCheetahVel, H=100, 40 tasks x 20 episodes, {usable_cpus()} usable cores:")
    print(f"  1 process:   {one:7.2f} s / meta-iteration")
    print(f"  {args.processes} processes: {many:7.2f} s / meta-iteration")
    print(f"  speed-up {one / many:.2f}x with {args.processes} processes on this machine")


if __name__ == "__main__":
    main()
