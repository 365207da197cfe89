"""Reproduce one family's comparison of the MAML paper (Figure 5 / section 5.3).

Trains MAML and the paper's baselines (pretrained, random, oracle) for several
seeds with ``metarl train``, evaluates every run with ``metarl evaluate``
(returns after 0..K inner steps on held-out tasks), then writes into OUT_DIR:
``comparison.png`` (adaptation curves), ``training.png`` (training curves,
mean and spread over seeds) and ``comparison.md`` (a table next to the
paper's numbers, with the wall-clock time of each method).

    python experiments/reproduce.py --config experiments/configs/navigation-2d.yaml \
        --out-dir runs/compare-navigation [--seeds 0 1 2] [--set iterations=100]

Runs already finished in OUT_DIR are reused (resumed if stopped). The random
baseline is its initialisation (one iteration); ``--baseline-iterations``
trains pretrained and oracle for fewer iterations than the config's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metarl.cli import main as metarl
from metarl.compare import read_scalars
from metarl.evaluate import mean_ci95

METHODS = ("maml", "pretrained", "random", "oracle")
PAPER = {  # MAML paper, returns after 0 / 1 / 2 / 3 gradient steps (MAML)
    "Navigation2D": [-40.41, -11.68, -3.33, -3.23],
    "HalfCheetahDir": [-50.69, 293.19, 313.48, 315.65],
}


def method_overrides(method: str, baseline_iterations: int | None) -> list[str]:
    """random keeps its initialisation: one iteration writes it; the others may be shorter."""
    if method == "random":
        return ["iterations=1"]
    if method in ("pretrained", "oracle") and baseline_iterations is not None:
        return [f"iterations={baseline_iterations}"]
    return []


def train_and_evaluate(config: str, run: Path, method: str, seed: int, overrides: list[str],
                       steps: int, tasks: int) -> dict:
    """Train (or resume a stopped run), evaluate; the evaluation with the training's
    iterations and minutes (summed from its TensorBoard log) added."""
    args = ["train", config, "--run-dir", str(run), "--quiet", f"--set=method={method}",
            f"--set=seed={seed}", *[f"--set={o}" for o in overrides]]
    if (run / "checkpoint.pt").exists():
        args.append("--resume")
    if metarl(args) != 0:
        raise SystemExit(f"training {run} failed")
    if metarl(["evaluate", str(run), "--steps", str(steps), "--tasks", str(tasks)]) != 0:
        raise SystemExit(f"evaluating {run} failed")
    iterations, seconds = read_scalars(run, "time/iteration")
    result = json.loads((run / "evaluation.json").read_text())
    return {**result, "train_iterations": iterations[-1], "train_minutes": sum(seconds) / 60}


def table(results: dict[str, list[dict]], env: str) -> str:
    steps = len(next(iter(results.values()))[0]["curve"]["mean"])
    head = ("| method | " + " | ".join(f"{k} steps" for k in range(steps))
            + " | iterations | training time |")
    lines = [head, "|" + "---|" * (steps + 3)]
    if env in PAPER:
        paper = PAPER[env][:steps]
        lines.append("| MAML paper | " + " | ".join(f"{v:.2f}" for v in paper) + " | 500 | |")
    for method, runs in results.items():
        # Mean over seeds of each seed's mean return; interval across seeds' task returns.
        per_task = np.concatenate([np.asarray(r["per_task"]) for r in runs])
        if method == "oracle":  # drawn without adaptation, as the paper (see unadapted)
            per_task = np.repeat(per_task[:, :1], per_task.shape[1], axis=1)
        mean, half = zip(*(mean_ci95(column) for column in per_task.T))
        cells = " | ".join(f"{m:.2f} ± {h:.2f}" for m, h in zip(mean, half))
        minutes = sum(r["train_minutes"] for r in runs) / len(runs)
        name = "oracle, not adapted" if method == "oracle" else method
        lines.append(f"| {name} ({len(runs)} seed{'s' * (len(runs) > 1)}) | {cells} | "
                     f"{runs[0]['train_iterations']} | {minutes:.1f} min per seed |")
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
    parser.add_argument("--baseline-iterations", type=int,
                        help="meta-iterations of pretrained and oracle (default: the config's)")
    args = parser.parse_args()
    out = Path(args.out_dir)
    results: dict[str, list[dict]] = {}
    for method in args.methods:
        for seed in args.seeds:
            run = out / f"{method}-seed{seed}"
            overrides = [*args.set, *method_overrides(method, args.baseline_iterations)]
            results.setdefault(method, []).append(
                train_and_evaluate(args.config, run, method, seed, overrides, args.steps,
                                   args.tasks))
    runs = [str(out / f"{m}-seed{s}") for m in args.methods for s in args.seeds]
    metarl(["plot", *runs, "--out", str(out / "comparison.png")])
    metarl(["plot", *runs, "--training", "--out", str(out / "training.png")])
    env = results[args.methods[0]][0]["env"]
    (out / "comparison.md").write_text(table(results, env))
    print((out / "comparison.md").read_text())


if __name__ == "__main__":
    main()
