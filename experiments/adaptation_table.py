"""A markdown table of RL evaluations: returns after 0..K steps and the paired gains.

    python experiments/adaptation_table.py "MAML, best (444)=RUN/evaluation-best.json" \
        "pretrained=OTHER/evaluation.json" [--oracle "oracle=ORACLE/evaluation.json"]

Each cell is the mean over tasks ± its 95% interval; the gain after k steps is the
per-task difference from the return before adaptation, averaged (paired, so its interval
is narrower than the returns'). The evaluations must share their tasks (``metarl
evaluate`` with the same --seed and --tasks): checked by their seed and task count.
An ``--oracle`` row is shown unadapted, as the MAML paper draws it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metarl.evaluate import mean_ci95


def cell(values: np.ndarray, sign: bool = False) -> str:
    mean, half = mean_ci95(values)
    return f"{mean:+.1f} ± {half:.1f}" if sign else f"{mean:.1f} ± {half:.1f}"


def row(label: str, per_task: np.ndarray, unadapted: bool = False) -> str:
    """per_task (tasks, K + 1) -> '| label | returns ... | gains ... |'."""
    if unadapted:
        returns = [cell(per_task[:, 0])] * per_task.shape[1]
        gains = ["(not adapted)"]
    else:
        returns = [cell(per_task[:, k]) for k in range(per_task.shape[1])]
        gains = [" / ".join(cell(per_task[:, k] - per_task[:, 0], sign=True)
                            for k in range(1, per_task.shape[1]))]
    return "| " + " | ".join([label, *returns, *gains]) + " |"


def parse(spec: str) -> tuple[str, dict]:
    label, _, path = spec.rpartition("=")
    if not label:
        raise SystemExit(f"expected LABEL=PATH, got {spec!r}")
    result = json.loads(Path(path).read_text())
    if "per_task" not in result:
        raise SystemExit(f"{path}: not an RL evaluation (no per_task returns)")
    return label, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", metavar="LABEL=PATH")
    parser.add_argument("--oracle", metavar="LABEL=PATH")
    args = parser.parse_args()
    rows = [(*parse(spec), False) for spec in args.evaluations]
    if args.oracle:
        rows.append((*parse(args.oracle), True))
    tasks = {(r["seed"], r["tasks"]) for _, r, _ in rows}
    if len(tasks) > 1:
        raise SystemExit(f"the evaluations drew different tasks (seed, tasks): {sorted(tasks)}")
    steps = len(rows[0][1]["curve"]["mean"])
    print("| | " + " | ".join(f"{k} step{'s' * (k != 1)}" for k in range(steps))
          + " | gain after " + " / ".join(str(k) for k in range(1, steps)) + " steps |")
    print("|" + "---|" * (steps + 2))
    for label, result, unadapted in rows:
        print(row(label, np.asarray(result["per_task"]), unadapted))


if __name__ == "__main__":
    main()
