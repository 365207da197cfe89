"""Which Fisher-vector product should MAML-TRPO use? Learning quality at equal wall-clock.

Trains 2D navigation (``navigation-2d.yaml``) with each Fisher variant for the
same number of minutes (``time_limit_minutes``), then evaluates every final
iterate on the same held-out tasks (returns after 0 and 1 inner steps).
Writes into OUT_DIR ``fisher.png`` (post-adaptation training return against
wall-clock minutes) and ``fisher.md`` (a table: iterations reached, seconds
per iteration, evaluated returns).

    python experiments/fisher_choice.py --out-dir runs/fisher --minutes 4 \
        [--seeds 0 1] [--variants 0 6] [--set threads=1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metarl.cli import main as metarl
from metarl.compare import read_scalars
from metarl.evaluate import mean_ci95
from metarl.plot import plt, save

VARIANTS = {  # name -> config overrides
    "exact, all episodes": ["fisher=exact", "fisher_fraction=1.0"],
    "exact, 10% of episodes": ["fisher=exact", "fisher_fraction=0.1"],
    "adapted, all episodes": ["fisher=adapted", "fisher_fraction=1.0"],
    "adapted, 10% of episodes": ["fisher=adapted", "fisher_fraction=0.1"],
    "exact, 50% of episodes": ["fisher=exact", "fisher_fraction=0.5"],
    "exact, all episodes, 5 CG iterations": ["fisher=exact", "fisher_fraction=1.0",
                                             "cg_iters=5"],
    "exact, all episodes, bfloat16 products": ["fisher=exact", "fisher_fraction=1.0",
                                               "fisher_dtype=bfloat16"],
}


def run_variant(config: str, run: Path, overrides: list[str], minutes: float, tasks: int) -> dict:
    """Train for ``minutes`` (skipped if the run exists) and evaluate the final iterate."""
    if not (run / "checkpoint.pt").exists():
        args = ["train", config, "--run-dir", str(run), "--quiet", "--set=iterations=100000",
                f"--set=time_limit_minutes={minutes}", *[f"--set={o}" for o in overrides]]
        if metarl(args) != 0:
            raise SystemExit(f"training {run} failed")
    out = run / "final-evaluation.json"
    if not out.exists() and metarl(["evaluate", str(run), "--checkpoint", "checkpoint.pt",
                                     "--steps", "1", "--tasks", str(tasks),
                                     "--out", str(out)]) != 0:
        raise SystemExit(f"evaluating {run} failed")
    steps, seconds = read_scalars(run, "time/iteration")
    _, post = read_scalars(run, "return/after_1_steps")
    return {"evaluation": json.loads(out.read_text()), "iterations": steps[-1],
            "minutes": np.cumsum(seconds) / 60, "post": np.asarray(post)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/navigation-2d.yaml")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--variants", type=int, nargs="+", default=list(range(len(VARIANTS))),
                        help="which variants, by their place in VARIANTS (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for every run, e.g. threads=1")
    args = parser.parse_args()
    out = Path(args.out_dir)
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = ["| Fisher product | iterations in "
             f"{args.minutes:g} min | s / iteration | return, 0 steps | return, 1 step |",
             "|---|---|---|---|---|"]
    for color, (name, overrides) in enumerate(VARIANTS.items()):
        if color not in args.variants:
            continue
        slug = "-".join(o.split("=")[1] for o in overrides)
        results = [run_variant(args.config, out / f"{slug}-seed{seed}",
                               [*overrides, f"seed={seed}", *args.set], args.minutes, args.tasks)
                   for seed in args.seeds]
        for i, r in enumerate(results):
            window = min(5, len(r["post"]))
            smooth = np.convolve(r["post"], np.ones(window) / window, mode="valid")
            ax.plot(r["minutes"][window - 1:], smooth, color=f"C{color}",
                    label=name if i == 0 else None)
        per_task = np.concatenate([np.asarray(r["evaluation"]["per_task"]) for r in results])
        mean, half = zip(*(mean_ci95(column) for column in per_task.T))
        iterations = np.mean([r["iterations"] for r in results])
        per_iteration = np.mean([60 * r["minutes"][-1] / r["iterations"] for r in results])
        lines.append(f"| {name} | {iterations:.0f} | {per_iteration:.2f} | "
                     f"{mean[0]:.2f} ± {half[0]:.2f} | {mean[1]:.2f} ± {half[1]:.2f} |")
    save(fig, ax, out / "fisher.png", "wall-clock minutes", "post-adaptation return "
         "(training, 5-iteration mean)", f"Fisher products, {len(args.seeds)} seed(s)")
    (out / "fisher.md").write_text("\n".join(lines) + "\n")
    print((out / "fisher.md").read_text())


if __name__ == "__main__":
    main()
