"""What every path's evaluation shares: loading a run, 95% intervals, writing results.

Each path evaluates in its own module (``rl.evaluate``, ``supervised.sinusoid_eval``,
``supervised.fewshot_eval``); the CLI dispatches by the run's ``kind``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.runs import check_resumable, load_run_config


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its normal-approximation 95% interval (1.96 standard errors)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def load_run(run_dir: str | Path, checkpoint: str = "checkpoint.pt"):
    """(config, checkpoint state) of a run, checked to belong together."""
    config = load_run_config(run_dir)
    state = load_checkpoint(Path(run_dir) / checkpoint)
    try:
        check_resumable(state["config"], config, Path(run_dir))
    except CheckpointError:
        raise CheckpointError(f"{run_dir}: {checkpoint} was written by a different config than "
                              "its config.yaml") from None
    return config, state


def write_csv(result: dict, path: Path) -> None:
    """One row per (task, step) with that task's metric (RL return, few-shot accuracy)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "step", result["metric"]])
        for task, returns in enumerate(result["per_task"]):
            writer.writerows([task, step, value] for step, value in enumerate(returns))


def write_result(result: dict, out: str | Path) -> tuple[Path, Path]:
    """Write the JSON, the PNG of its curves and (RL) a per-task CSV next to it.

    Returns the JSON and PNG paths.
    """
    from metarl.plot import metric_label, plot_curves

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    png = out.with_suffix(".png")
    if "per_task" in result:
        write_csv(result, out.with_suffix(".csv"))
    if "shots" in result:
        curves = {f"K={k}": v for k, v in result["shots"].items()}
        name = result["kind"]
    else:
        name = result["env"] if "env" in result else result["dataset"]
        curves = {result["method"]: result["curve"]}
    plot_curves(curves, png, ylabel=metric_label(result["metric"]),
                title=f"{name} ({result['method']}), {result['tasks']} held-out tasks")
    return out, png
