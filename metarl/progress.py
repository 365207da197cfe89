"""Where a training run stands, in text: iterations done, time spent and left, and the
value before and after adaptation per block of iterations (``metarl progress``)."""

from __future__ import annotations

import statistics
from pathlib import Path

from metarl.checkpoint import load_checkpoint
from metarl.compare import default_training_tags, load_events, scalars_of, tag_label
from metarl.runs import load_run_config

# Seconds per iteration as each kind logs it (RL every iteration, supervised every log_every).
TIME_TAGS = {"rl": "time/iteration", "sinusoid": "time/seconds_per_iteration",
             "fewshot": "time/seconds_per_iteration"}


def seconds_spent(steps: list[int], seconds_per_iteration: list[float]) -> float:
    """Training time from logged seconds per iteration: each point stands for the
    iterations since the previous logged one. steps: increasing iteration numbers."""
    previous, total = 0, 0.0
    for step, seconds in zip(steps, seconds_per_iteration):
        total += seconds * (step - previous)
        previous = step
    return total


def block_means(steps: list[int], values: list[float], every: int) -> dict[int, float]:
    """Mean of the values logged in each block of ``every`` iterations, keyed by the
    block's first iteration (1, every + 1, ...); blocks with nothing logged are absent."""
    blocks: dict[int, list[float]] = {}
    for step, value in zip(steps, values):
        first = (step - 1) // every * every + 1
        blocks.setdefault(first, []).append(value)
    return {first: sum(v) / len(v) for first, v in blocks.items()}


def saved_iteration(path: Path) -> int | None:
    return int(load_checkpoint(path)["iteration"]) if path.is_file() else None


def training_progress(run_dir: str | Path, every: int | None = None) -> dict:
    """The run's state from its config, checkpoints and TensorBoard scalars.

    every: iterations per block (default a tenth of the configured iterations), rounded
    up to whole multiples of the run's log_every.
    Returns done (the checkpoint's iteration, from which --resume continues; a running
    training has usually logged a few more, ``logged``), total,
    best (best.pt's iteration or None), hours, seconds_per_iteration (median of the
    last 30 logged), hours_left, and rows: (first, last, {tag label: block mean}).
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    events = load_events(run_dir)
    logged = set(events.Tags()["scalars"])
    tags = default_training_tags(config, logged)
    curves = {tag_label(tag): scalars_of(events, tag, run_dir) for tag in tags}
    time_steps, seconds = scalars_of(events, TIME_TAGS[config.kind], run_dir)
    saved = saved_iteration(run_dir / "checkpoint.pt")
    done = time_steps[-1] if saved is None else saved
    every = every or max(1, config.iterations // 10)
    every = -(-every // config.log_every) * config.log_every  # whole logging periods
    means = {label: block_means(*curve, every) for label, curve in curves.items()}
    firsts = sorted(set().union(*means.values()))
    rows = [(first, min(first + every - 1, time_steps[-1]),
             {label: m[first] for label, m in means.items() if first in m}) for first in firsts]
    per_iteration = statistics.median(seconds[-30:])
    return {"run_dir": str(run_dir), "method": config.method,
            "task": getattr(config, "env", None) or getattr(config, "dataset", config.kind),
            "done": done, "logged": time_steps[-1], "total": config.iterations,
            "best": saved_iteration(run_dir / "best.pt"),
            "hours": seconds_spent(time_steps, seconds) / 3600,
            "seconds_per_iteration": per_iteration,
            "hours_left": max(0, config.iterations - done) * per_iteration / 3600,
            "labels": list(curves), "rows": rows}


def format_progress(progress: dict) -> str:
    """A header line and a table of block means, with after - before where both are logged."""
    p = progress
    logged = f" (logged to {p['logged']})" if p["logged"] > p["done"] else ""
    head = (f"{p['run_dir']} ({p['method']}, {p['task']}): {p['done']} of {p['total']} "
            f"iterations checkpointed{logged}, {p['hours']:.2f} h of training, "
            f"{p['seconds_per_iteration']:.3g} s per iteration (median of the last 30 logged)")
    if p["done"] < p["total"]:
        head += f", about {p['hours_left']:.2f} h to go"
    if p["best"] is not None:
        head += f"; best.pt is iteration {p['best']}"
    labels = p["labels"]
    gain = len(labels) == 2
    columns = ["iterations", *labels, *(["after - before"] if gain else [])]
    widths = [max(len(c), 11) for c in columns]
    lines = [head, "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    for first, last, values in p["rows"]:
        cells = [f"{first}-{last}"] + [f"{values[label]:.4g}" if label in values else "-"
                                       for label in labels]
        if gain and len(values) == 2:
            cells.append(f"{values[labels[1]] - values[labels[0]]:+.4g}")
        lines.append("  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)
