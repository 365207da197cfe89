"""Compare runs: adaptation curves and training curves of several runs on one figure."""

from __future__ import annotations

import json
from pathlib import Path

from metarl.checkpoint import CheckpointError
from metarl.config import to_dict
from metarl.plot import metric_label, plot_curves, plot_training
from metarl.runs import load_run_config

# Per kind: (before adaptation, after it, axis label). A training curve draws both, so
# that the gap the inner steps buy is visible, not just the post-adaptation level.
TRAINING_TAGS = {
    "rl": ("return/after_0_steps", "return/after_{steps}_steps", "training return"),
    "sinusoid": ("loss/query_before_adaptation", "loss/query_after_adaptation", "query loss"),
    "fewshot": ("accuracy/query_before_adaptation", "accuracy/query_after_adaptation",
                "query accuracy"),
}


def load_evaluation(run_dir: str | Path, name: str = "evaluation.json") -> dict:
    path = Path(run_dir) / name
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no {name}; run `metarl evaluate {run_dir}` first")
    return json.loads(path.read_text())


def run_label(run_dir: str | Path, config) -> str:
    return f"{config.method} ({Path(run_dir).name})"


def unadapted(curve: dict) -> dict:
    """The 0-step value as a flat line: the oracle knows the task, so the paper draws
    it without adaptation (a policy-gradient step with MAML's rate only hurts it)."""
    n = len(curve["steps"])
    return {"steps": curve["steps"], "mean": [curve["mean"][0]] * n,
            "ci95": [curve["ci95"][0]] * n}


def adaptation_figure(run_dirs: list[str], out: str | Path) -> Path:
    """The evaluated adaptation curves of several runs, with 95% intervals."""
    curves, metric = {}, None
    for run_dir in run_dirs:
        config = load_run_config(run_dir)
        result = load_evaluation(run_dir)
        metric = result["metric"]
        label = run_label(run_dir, config)
        if "shots" in result:
            curves.update({f"{label} K={k}": c for k, c in result["shots"].items()})
        elif config.kind == "rl" and config.method == "oracle":
            curves[f"{label}, not adapted"] = unadapted(result["curve"])
        else:
            curves[label] = result["curve"]
    return plot_curves(curves, out, ylabel=metric_label(metric),
                       title="adaptation on held-out tasks")


def load_events(run_dir: str | Path):
    """The run's TensorBoard scalars, every point kept (an ``EventAccumulator``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return events


def scalars_of(events, tag: str, run_dir: str | Path) -> tuple[list[int], list[float]]:
    """(steps, values) of ``tag`` in loaded events; a clear error naming the run if absent."""
    logged = events.Tags()["scalars"]
    if not logged:
        raise CheckpointError(f"{run_dir} has no TensorBoard scalars (no events.out.tfevents.* "
                              "files, or empty ones)")
    if tag not in logged:
        raise CheckpointError(f"{run_dir}: no TensorBoard scalar {tag!r} "
                              f"(has {', '.join(sorted(logged))})")
    scalars = events.Scalars(tag)
    return [s.step for s in scalars], [s.value for s in scalars]


def read_scalars(run_dir: str | Path, tag: str) -> tuple[list[int], list[float]]:
    return scalars_of(load_events(run_dir), tag, run_dir)


def training_figure(run_dirs: list[str], out: str | Path, tags: list[str] | None = None,
                    smooth: int | None = None) -> Path:
    """Training curves; runs whose configs differ only in the seed are one group.

    tags: TensorBoard scalars to draw, one line per group and tag; by default the
    kind's value before and after adaptation. smooth: see ``plot_training``.
    """
    groups: dict[str, list] = {}
    labels: dict[str, str] = {}
    kinds = []
    for run_dir in run_dirs:
        config = load_run_config(run_dir)
        kinds.append(config.kind)
        key = json.dumps({k: v for k, v in to_dict(config).items()
                          if k not in ("seed", "iterations", "threads", "device")},
                         sort_keys=True)
        labels.setdefault(key, run_label(run_dir, config))
        events = load_events(run_dir)  # read once per run, for every tag drawn
        run_tags = tags or default_training_tags(config, set(events.Tags()["scalars"]))
        for tag in run_tags:
            label = labels[key] if len(run_tags) == 1 else f"{labels[key]}: {tag_label(tag)}"
            groups.setdefault(label, []).append(scalars_of(events, tag, run_dir))
    if tags is None:
        ylabel = TRAINING_TAGS[kinds[0]][2]
    else:
        ylabel = tags[0] if len(tags) == 1 else "value"
    return plot_training(groups, out, ylabel=ylabel, title="meta-training", smooth=smooth)


def default_training_tags(config, logged: set[str]) -> list[str]:
    """The kind's before and after tags among those the run logged (the RL oracle and
    pretrained baselines take no inner step in training, so log no after)."""
    before, after, _ = TRAINING_TAGS[config.kind]
    after = after.format(steps=config.training_inner_steps if config.kind == "rl" else 1)
    return [tag for tag in (before, after) if tag in logged] or [after]


def tag_label(tag: str) -> str:
    """Readable name of a tag: "return/after_0_steps" -> "before adaptation",
    "return/after_2_steps" -> "after 2 steps", "accuracy/query_after_adaptation" ->
    "after adaptation"; others as they are."""
    name = tag.split("/")[-1]
    if name in ("after_0_steps", "query_before_adaptation"):
        return "before adaptation"
    if name == "query_after_adaptation":
        return "after adaptation"
    if name.startswith("after_") and name.endswith("_steps"):
        steps = name[len("after_"):-len("_steps")]
        return f"after {steps} step{'s' * (steps != '1')}"
    return tag
