"""Do two outer-step settings learn alike? Groups of finished runs (seeds), compared.

Each run's final iterate is evaluated on the same held-out tasks (``metarl
evaluate --checkpoint checkpoint.pt --steps 1``, kept as ``final-evaluation.json``);
its training curve (post-adaptation return of each meta-batch) is read from
TensorBoard. Writes into OUT_DIR ``curves.png`` (training curves, 10-iteration
means, against iterations and against the runs' own wall-clock) and
``table.md`` (per group: iterations, seconds per iteration, mean training return
over the last 20 iterations, evaluated returns after 0 and 1 steps over all
tasks of all seeds, with 95% intervals).

    python experiments/compare_outer_steps.py --out-dir runs/kfac/nav \\
        --group "plain CG, 10=runs/kfac/nav-plain10-seed*" \\
        --group "K-FAC CG, 5=runs/kfac/nav-kfac5-seed*" [--tasks 40]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from metarl.cli import main as metarl
from metarl.compare import read_scalars
from metarl.evaluate import mean_ci95
from metarl.plot import plt


def evaluated(run: Path, tasks: int) -> np.ndarray:
    """Per-task returns (tasks, 2) of the final iterate after 0 and 1 inner steps."""
    out = run / "final-evaluation.json"
    if not out.exists() and metarl(["evaluate", str(run), "--checkpoint", "checkpoint.pt",
                                     "--steps", "1", "--tasks", str(tasks),
                                     "--out", str(out)]) != 0:
        raise SystemExit(f"evaluating {run} failed")
    return np.asarray(json.loads(out.read_text())["per_task"])


def smooth(values, window: int = 10) -> np.ndarray:
    window = min(window, len(values))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--group", action="append", required=True, metavar="LABEL=GLOB")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--inner-steps", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"return/after_{args.inner_steps}_steps"
    fig, (by_iteration, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    lines = ["| setting | runs | iterations | s / iteration | training return, last 20 | "
             "return, 0 steps | return, 1 step |", "|---|---|---|---|---|---|---|"]
    for color, spec in enumerate(args.group):
        label, pattern = spec.split("=", 1)
        runs = sorted(Path(p) for p in glob.glob(pattern) if Path(p, "checkpoint.pt").exists())
        if not runs:
            raise SystemExit(f"no finished runs match {pattern!r}")
        per_task, last, seconds, iterations = [], [], [], []
        for i, run in enumerate(runs):
            steps, post = read_scalars(run, tag)
            _, times = read_scalars(run, "time/iteration")
            minutes = np.cumsum(times) / 60
            window = min(10, len(post))
            name = label if i == 0 else None
            by_iteration.plot(steps[window - 1:], smooth(post), color=f"C{color}", label=name)
            by_time.plot(minutes[window - 1:], smooth(post), color=f"C{color}", label=name)
            last.append(np.mean(post[-20:]))
            seconds.append(np.mean(times))
            iterations.append(steps[-1])
            per_task.append(evaluated(run, args.tasks))
        per_task = np.concatenate(per_task)
        before, after = mean_ci95(per_task[:, 0]), mean_ci95(per_task[:, 1])
        lines.append(f"| {label} | {len(runs)} | {np.mean(iterations):.0f} | "
                     f"{np.mean(seconds):.2f} | {np.mean(last):.2f} | "
                     f"{before[0]:.2f} ± {before[1]:.2f} | {after[0]:.2f} ± {after[1]:.2f} |")
    for ax, xlabel in ((by_iteration, "meta-iteration"), (by_time, "wall-clock minutes")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("post-adaptation return (training, 10-iteration mean)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
