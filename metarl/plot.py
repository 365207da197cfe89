"""Plots of adaptation curves (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def metric_label(metric: str) -> str:
    """Axis label of an evaluation metric ("mse", "return" or "accuracy")."""
    return {"mse": "MSE", "accuracy": "query accuracy"}.get(metric, "mean episode return")


def save(fig, ax, out: str | Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid and legend the axes, write the PNG and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def plot_curves(curves: dict[str, dict], out: str | Path, ylabel: str, title: str = "",
                log_y: bool = False) -> Path:
    """One line per curve with its 95% band; each curve has ``steps``, ``mean``, ``ci95``."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        steps, mean, ci = curve["steps"], curve["mean"], curve["ci95"]
        ax.plot(steps, mean, marker="o", label=label)
        ax.fill_between(steps, [m - c for m, c in zip(mean, ci)],
                        [m + c for m, c in zip(mean, ci)], alpha=0.2)
    if log_y:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole
    return save(fig, ax, out, "inner gradient steps", ylabel, title)


def moving_mean(values: list[float], window: int) -> list[float]:
    """At each point the mean of the last ``window`` values (of all so far at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_training(groups: dict[str, list[tuple[list[int], list[float]]]], out: str | Path,
                  ylabel: str, title: str = "", smooth: int | None = None) -> Path:
    """Training curves: per group, the mean over its runs and the min-max spread.

    groups: label -> one (steps, values) per run (seeds); runs are cut to the
    shortest so the mean is over the same iterations. smooth: the mean is also drawn
    as a moving mean of this many logged points over the faint raw line (default
    a fiftieth of the points; 1: raw only).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    windows = set()
    for label, runs in groups.items():
        length = min(len(steps) for steps, _ in runs)
        steps = runs[0][0][:length]
        values = [values[:length] for _, values in runs]
        mean = [sum(v[i] for v in values) / len(values) for i in range(length)]
        window = smooth or max(1, length // 50)
        label = f"{label} ({len(runs)} run{'s' * (len(runs) > 1)})"
        if window > 1:
            windows.add(window)
            raw, = ax.plot(steps, mean, alpha=0.25, linewidth=0.8)
            ax.plot(steps, moving_mean(mean, window), color=raw.get_color(), label=label)
        else:
            raw, = ax.plot(steps, mean, label=label)
        if len(runs) > 1:
            ax.fill_between(steps, [min(v[i] for v in values) for i in range(length)],
                            [max(v[i] for v in values) for i in range(length)], alpha=0.2,
                            color=raw.get_color())
    if windows:
        title += f" (bold: moving mean of {' / '.join(map(str, sorted(windows)))} logged points)"
    return save(fig, ax, out, "meta-iteration", ylabel, title)
