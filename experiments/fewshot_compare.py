"""Few-shot classification: several methods on one config, trained and evaluated.

Trains each ``--methods`` entry with ``metarl train CONFIG --set method=...``,
evaluates it with ``metarl evaluate`` (accuracy after 0..K inner steps on 600
held-out tasks, 95% intervals) and writes into OUT_DIR ``comparison.md`` (a
table with the training time) and ``comparison.png`` (the adaptation curves).
Runs already finished in OUT_DIR are reused as they are (resumed if stopped
short of their own ``iterations``), so methods may be trained for different
numbers of iterations by separate calls; the table says how many.

    python experiments/fewshot_compare.py --config experiments/configs/omniglot-small-5w1s.yaml \\
        --out-dir runs/omniglot-small-5w1s --set iterations=1500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metarl.checkpoint import load_checkpoint
from metarl.cli import main as metarl
from metarl.compare import read_scalars
from metarl.runs import load_run_config


def finished_iteration(run: Path) -> int | None:
    """The iteration of the run's last checkpoint (None if there is none)."""
    if not (run / "checkpoint.pt").exists():
        return None
    return int(load_checkpoint(run / "checkpoint.pt")["iteration"])


def train_and_evaluate(config: str, run: Path, method: str, overrides: list[str],
                       tasks: int) -> dict:
    args = ["train", config, "--run-dir", str(run), "--quiet", f"--set=method={method}",
            *[f"--set={o}" for o in overrides]]
    done = finished_iteration(run)
    if done is None or done < load_run_config(run).iterations:
        if done is not None:
            args.append("--resume")
        if metarl(args) != 0:
            raise SystemExit(f"training {run} failed")
    evaluation = run / "evaluation.json"
    if (not evaluation.exists()
            or json.loads(evaluation.read_text())["iteration"] != finished_iteration(run)):
        if metarl(["evaluate", str(run), "--tasks", str(tasks)]) != 0:
            raise SystemExit(f"evaluating {run} failed")
    iterations, seconds = read_scalars(run, "time/seconds_per_iteration")
    # Logged every log_every iterations: the mean over that block.
    block = iterations[0] if len(iterations) == 1 else iterations[1] - iterations[0]
    result = json.loads((run / "evaluation.json").read_text())
    return {**result, "train_iterations": iterations[-1],
            "train_minutes": block * sum(seconds) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--methods", nargs="+", default=["maml", "fomaml", "metasgd", "anil"])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.out_dir)
    results = {m: train_and_evaluate(args.config, out / m, m, args.set, args.tasks)
               for m in args.methods}
    steps = len(next(iter(results.values()))["curve"]["mean"])
    lines = ["| method | " + " | ".join(f"{k} steps" for k in range(steps))
             + " | iterations | training time |", "|" + "---|" * (steps + 3)]
    for method, r in results.items():
        cells = " | ".join(f"{100 * m:.1f} ± {100 * c:.1f}"
                           for m, c in zip(r["curve"]["mean"], r["curve"]["ci95"]))
        lines.append(f"| {method} | {cells} | {r['train_iterations']} | "
                     f"{r['train_minutes']:.0f} min |")
    (out / "comparison.md").write_text("accuracy (%) on held-out tasks, ± 95% interval\n\n"
                                       + "\n".join(lines) + "\n")
    metarl(["plot", *[str(out / m) for m in args.methods], "--out", str(out / "comparison.png")])
    print((out / "comparison.md").read_text())


if __name__ == "__main__":
    main()
