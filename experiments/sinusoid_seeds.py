"""The sinusoid result over several training seeds, under two test-time step rules.

Trains ``experiments/configs/sinusoid.yaml`` once per seed (a finished run in
RUNS/seedS is reused; ~3 min each on one core), then evaluates every run on the
README's protocol (600 held-out tasks, 100 query points) twice:

- ``fixed``: every step of size alpha = 0.01 (the MAML paper's sinusoid protocol);
- ``halved``: alpha for the first step, alpha / 2 after (its RL protocol).

Prints one markdown table of the 5-, 10- and 20-shot MSE after 1 / 5 / 10 steps per
seed and rule, the median over tasks next to the mean (a few diverging tasks
dominate a mean), and how many tasks end 10 steps worse than 10x their one-step
error (diverged). Why they diverge: ``sinusoid_sharpness.py``.

    python experiments/sinusoid_seeds.py --runs runs/sinusoid-seeds --seeds 0 1 2 3 4 \\
        --out experiments/results/sinusoid/seeds.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from metarl.evaluate import load_run, mean_ci95
from metarl.supervised.sinusoid_eval import sinusoid_curves
from metarl.supervised.train import load_learner

CONFIG = Path(__file__).parent / "configs" / "sinusoid.yaml"
RULES = {"fixed": 1.0, "halved": 0.5}
STEPS = (1, 5, 10)


def train(run_dir: Path, seed: int) -> None:
    """Train one seed unless its run finished; resume an unfinished one."""
    if (run_dir / "checkpoint.pt").exists():
        from metarl.checkpoint import load_checkpoint
        from metarl.config import load_config

        if load_checkpoint(run_dir / "checkpoint.pt")["iteration"] >= load_config(
                CONFIG).iterations:
            return
        extra = ["--resume"]
    else:
        extra = ["--set", f"seed={seed}"]
    subprocess.run([sys.executable, "-m", "metarl", "train", str(CONFIG), "--run-dir",
                    str(run_dir), "--quiet", *extra], check=True)


def per_task_curves(run_dir: Path, later_factor: float, shots: int) -> np.ndarray:
    """(600, 11) per-task MSE after 0..10 steps: ``metarl evaluate``'s tasks and draws."""
    config, state = load_run(run_dir, "checkpoint.pt")
    model, rates = load_learner(run_dir, config, state)
    rng = np.random.default_rng([12345, shots])
    return sinusoid_curves(model, rates, config, rng, 600, shots, 10, 100, later_factor)


def summarise(run_dir: Path) -> dict:
    out = {}
    for rule, factor in RULES.items():
        out[rule] = {}
        for shots in ("5", "10", "20"):
            per_task = per_task_curves(run_dir, factor, int(shots))
            stats = {s: mean_ci95(per_task[:, s]) for s in STEPS}
            row = {f"mean_{s}": stats[s][0] for s in STEPS}
            row.update({f"ci95_{s}": stats[s][1] for s in STEPS})
            row.update({f"median_{s}": float(np.median(per_task[:, s])) for s in STEPS})
            row["diverged_tasks_10"] = int(np.sum(per_task[:, 10] > 10 * per_task[:, 1]))
            out[rule][shots] = row
    return out


def table(summary: dict) -> str:
    lines = ["| seed | rule | 5-shot mean 1 / 5 / 10 | 5-shot median 1 / 5 / 10 | "
             "tasks worse at 10 than 10x step 1 | 10-shot mean | 20-shot mean |",
             "|---|---|---|---|---|---|---|"]
    for seed, by_rule in summary.items():
        for rule, by_shots in by_rule.items():
            five = by_shots["5"]
            fmt = lambda r, k: " / ".join(f"{r[f'{k}_{s}']:.3g}" for s in STEPS)  # noqa: E731
            lines.append(f"| {seed} | {rule} | {fmt(five, 'mean')} | {fmt(five, 'median')} | "
                         f"{five['diverged_tasks_10']} | {fmt(by_shots['10'], 'mean')} | "
                         f"{fmt(by_shots['20'], 'mean')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="folder of the runs, one seedS each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", help="JSON summary path")
    args = parser.parse_args()
    summary = {}
    for seed in args.seeds:
        run_dir = Path(args.runs) / f"seed{seed}"
        train(run_dir, seed)
        summary[seed] = summarise(run_dir)
    print(table(summary))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
