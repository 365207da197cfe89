"""What every path's evaluation shares: loading a run, 95% intervals, writing results.

Each path evaluates in its own module (``rl.evaluate``, ``supervised.sinusoid_eval``,
``supervised.fewshot_eval``); the CLI dispatches by the run's ``kind``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.config import ConfigError
from metarl.runs import check_resumable, load_run_config


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its normal-approximation 95% interval (1.96 standard errors)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def factor_at(later_factor, step: int) -> float:
    """The size of step ``step`` (0-based) relative to the first.

    later_factor: one factor for every later step, or a sequence (f_1, f_2, ...) of one
    per later step, its last repeated beyond its end.
    """
    if step == 0:
        return 1.0
    if isinstance(later_factor, (int, float)):
        return float(later_factor)
    return float(later_factor[min(step, len(later_factor)) - 1])


def step_sizes(alpha, steps: int, later_factor):
    """Test-time step sizes: ``alpha`` for the first step, ``alpha * factor_at(k)`` after.

    alpha: a float, or Meta-SGD's learned rates (a dict of tensors), scaled alike.
    The MAML paper's RL protocol halves later steps (0.5); its sinusoid and
    few-shot protocols keep alpha (1.0).
    """
    def scaled(factor):
        if isinstance(alpha, dict):
            return {k: v * factor for k, v in alpha.items()}
        return alpha * factor
    return [alpha if k == 0 else scaled(factor_at(later_factor, k)) for k in range(steps)]


def with_inner_lr(config, inner_lr: float | None):
    """``config`` evaluated with another first-step size (None: the trained one)."""
    if inner_lr is None:
        return config
    if not (math.isfinite(inner_lr) and inner_lr > 0):
        raise ConfigError(f"inner_lr must be a positive number, got {inner_lr}")
    if getattr(config, "method", None) == "metasgd":
        raise ConfigError("a Meta-SGD run adapts with its learned rates: use --later-factor "
                         "to scale the steps after the first, not --inner-lr")
    if getattr(config, "learned_step_rates", False):
        raise ConfigError("a run with learned per-step rates (MAML++) adapts with them, "
                          "not --inner-lr")
    return dataclasses.replace(config, inner_lr=inner_lr)


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
    success = result.get("per_task_success")  # Meta-World: the share of successful episodes
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "step", result["metric"]] + (["success"] if success else []))
        for task, returns in enumerate(result["per_task"]):
            writer.writerows([task, step, value] + ([success[task][step]] if success else [])
                             for step, value in enumerate(returns))


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
    if "success" in result:
        plot_curves({result["method"]: result["success"]},
                    out.with_name(out.stem + "-success.png"), ylabel="success rate",
                    title=f"{name} ({result['method']}), {result['tasks']} held-out tasks")
    return out, png
