"""Reproduce one family's comparison of the MAML paper (Figure 5 / section 5.3).

Trains MAML and the paper's baselines (pretrained, random, oracle) for several
seeds with ``metarl train``, evaluates every run with ``metarl evaluate``
(returns after 0..K inner steps on held-out tasks), then writes into OUT_DIR:
``comparison.png`` (adaptation curves), ``training.png`` (training curves,
mean and spread over seeds) and ``comparison.md`` (a table next to the
paper's numbers, with the wall-clock time of each method).

    python experiments/reproduce.py --config experiments/configs/navigation-2d.yaml \
        --out-dir runs/compare-navigation [--seeds 0 1 2] [--set iterations=100]

Runs already finished in OUT_DIR are reused (resumed if stopped).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from metarl.cli import main as metarl

METHODS = ("maml", "pretrained", "random", "oracle")
PAPER = {  # MAML paper, returns after 0 / 1 / 2 / 3 gradient steps (MAML)
    "Navigation2D": [-40.41, -11.68, -3.33, -3.23],
    "HalfCheetahDir": [-50.69, 293.19, 313.48, 315.65],
}


def train_and_evaluate(config: str, run: Path, method: str, seed: int, overrides: list[str],
                       steps: int, tasks: int) -> float:
    """Seconds spent training; skips (resumes) runs that exist."""
    args = ["train", config, "--run-dir", str(run), "--quiet", f"--set=method={method}",
            f"--set=seed={seed}", *[f"--set={o}" for o in overrides]]
    start = time.perf_counter()
    if (run / "checkpoint.pt").exists():
        args.append("--resume")
    if metarl(args) != 0:
        raise SystemExit(f"training {run} failed")
    seconds = time.perf_counter() - start
    if metarl(["evaluate", str(run), "--steps", str(steps), "--tasks", str(tasks)]) != 0:
        raise SystemExit(f"evaluating {run} failed")
    return seconds


def table(results: dict[str, list[dict]], seconds: dict[str, float], env: str) -> str:
    steps = len(next(iter(results.values()))[0]["curve"]["mean"])
    head = "| method | " + " | ".join(f"{k} steps" for k in range(steps)) + " | training time |"
    lines = [head, "|" + "---|" * (steps + 2)]
    if env in PAPER:
        paper = PAPER[env][:steps]
        lines.append("| MAML paper | " + " | ".join(f"{v:.2f}" for v in paper) + " | |")
    for method, runs in results.items():
        # Mean over seeds of each seed's mean return; interval across seeds' task returns.
        per_task = np.concatenate([np.asarray(r["per_task"]) for r in runs])
        mean = per_task.mean(axis=0)
        half = 1.96 * per_task.std(axis=0, ddof=1) / np.sqrt(len(per_task))
        cells = " | ".join(f"{m:.2f} ± {h:.2f}" for m, h in zip(mean, half))
        lines.append(f"| {method} ({len(runs)} seeds) | {cells} | {seconds[method] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.out_dir)
    results: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    for method in args.methods:
        seconds[method] = 0.0
        for seed in args.seeds:
            run = out / f"{method}-seed{seed}"
            seconds[method] += train_and_evaluate(args.config, run, method, seed, args.set,
                                                  args.steps, args.tasks)
            results.setdefault(method, []).append(json.loads((run / "evaluation.json").read_text()))
    runs = [str(out / f"{m}-seed{s}") for m in args.methods for s in args.seeds]
    metarl(["plot", *runs, "--out", str(out / "comparison.png")])
    metarl(["plot", *runs, "--training", "--out", str(out / "training.png")])
    env = results[args.methods[0]][0]["env"]
    (out / "comparison.md").write_text(table(results, seconds, env))
    print((out / "comparison.md").read_text())


if __name__ == "__main__":
    main()
