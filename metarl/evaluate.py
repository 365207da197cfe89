"""Adaptation curves: loss, accuracy or return after 0..K inner steps on held-out tasks.

Sinusoid protocol (MAML paper, section 5.1): held-out tasks sampled with their
own seed; for each support size K, gradient steps on the same K points with
the training inner rate (Meta-SGD: the learned rates; ANIL: head only), MSE on
``query_points`` fresh points of the same sine after every step.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from metarl.checkpoint import CheckpointError, load_checkpoint
from metarl.functional import detach_params, expand_params, params_of
from metarl.meta import adapt
from metarl.runs import check_resumable, load_run_config
from metarl.supervised import sinusoid
from metarl.supervised.meta_step import inner_settings, mse_per_task
from metarl.supervised.train import load_learner


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


def sinusoid_curves(model, rates, config, rng: np.random.Generator, num_tasks: int,
                    shots: int, steps: int, query_points: int) -> np.ndarray:
    """Per-task query MSE after 0..steps inner steps: (num_tasks, steps + 1)."""
    tasks = sinusoid.sample_sinusoids(rng, num_tasks, config.amplitude_range, config.phase_range)
    support = sinusoid.sinusoid_points(rng, tasks, shots, config.input_range)
    query = sinusoid.sinusoid_points(rng, tasks, query_points, config.input_range)
    lr, _, inner_names = inner_settings(config.method, model, config.inner_lr, rates)
    if isinstance(lr, dict):
        lr = detach_params(lr)
    params = detach_params(expand_params(params_of(model), num_tasks))
    losses = []
    for step in range(steps + 1):
        if step > 0:
            params = {k: v.requires_grad_() for k, v in params.items()}
            loss_fn = lambda p, b: mse_per_task(model, p, b).sum()
            params = detach_params(adapt(loss_fn, params, support, lr, 1, True, inner_names))
        with torch.no_grad():
            losses.append(mse_per_task(model, params, query).numpy())
    return np.stack(losses, axis=1)


def evaluate_sinusoid(run_dir: str | Path, steps: int = 10, num_tasks: int = 600,
                      shots: tuple[int, ...] = (5, 10, 20), seed: int = 12345,
                      query_points: int = 100, checkpoint: str = "checkpoint.pt") -> dict:
    """The paper's sinusoid protocol on a trained run; returns the JSON-ready result."""
    config, state = load_run(run_dir, checkpoint)
    model, rates = load_learner(run_dir, config, state)
    result = {"run_dir": str(run_dir), "kind": config.kind, "method": config.method,
              "iteration": int(state["iteration"]), "tasks": num_tasks, "seed": seed,
              "query_points": query_points, "metric": "mse", "shots": {}}
    for k in shots:
        rng = np.random.default_rng([seed, k])
        per_task = sinusoid_curves(model, rates, config, rng, num_tasks, k, steps, query_points)
        stats = [mean_ci95(per_task[:, s]) for s in range(steps + 1)]
        result["shots"][str(k)] = {"steps": list(range(steps + 1)),
                                   "mean": [m for m, _ in stats], "ci95": [c for _, c in stats]}
    return result


def evaluate_fewshot(run_dir: str | Path, steps: int | None = None, num_tasks: int = 600,
                     seed: int = 12345, checkpoint: str = "checkpoint.pt") -> dict:
    """Query accuracy after 0..steps inner steps on held-out N-way K-shot tasks.

    steps: default the config's ``eval_inner_steps`` (the paper's test steps).
    The held-out classes: Omniglot's test characters, MiniImageNet's ``eval_split``.
    """
    from metarl.runs import resolve_device
    from metarl.supervised.datasets import load_classes
    from metarl.supervised.fewshot_eval import heldout_curves

    config, state = load_run(run_dir, checkpoint)
    steps = config.eval_inner_steps if steps is None else steps
    images = load_classes(config, "eval").images
    model, rates = load_learner(run_dir, config, state)
    device = resolve_device(config.device)
    model.to(device)
    if rates is not None:
        rates.to(device)
    accuracy, loss = heldout_curves(model, rates, config, images, num_tasks, steps, seed,
                                    device=device)
    stats = [mean_ci95(accuracy[:, s]) for s in range(steps + 1)]
    return {"run_dir": str(run_dir), "kind": config.kind, "method": config.method,
            "dataset": f"{config.dataset} {config.ways}-way {config.shots}-shot",
            "checkpoint": checkpoint, "iteration": int(state["iteration"]), "tasks": num_tasks,
            "query_shots": config.query_shots, "inner_lr": config.inner_lr, "seed": seed,
            "metric": "accuracy",
            "curve": {"steps": list(range(steps + 1)), "mean": [m for m, _ in stats],
                      "ci95": [c for _, c in stats]},
            "loss": [float(v) for v in loss.mean(axis=0)],
            "per_task": accuracy.tolist()}


def evaluate_rl(run_dir: str | Path, family, steps: int = 3, num_tasks: int = 40,
                episodes: int | None = None, seed: int = 12345, later_factor: float = 0.5,
                checkpoint: str = "best.pt") -> dict:
    """Returns after 0..steps inner steps on held-out tasks of a MAML-TRPO run."""
    from metarl.rl.evaluate import adaptation_returns, step_sizes
    from metarl.rl.train import build_policy

    config, state = load_run(run_dir, checkpoint)
    probe = family.make_env()
    policy = build_policy(config, probe.observation_space, probe.action_space)
    probe.close()
    policy.load_state_dict(state["model"])
    if episodes is None:
        episodes = config.eval_episodes or config.episodes_per_task
    per_task = adaptation_returns(policy, family, config, num_tasks, episodes, steps, seed,
                                  later_factor)
    stats = [mean_ci95(per_task[:, k]) for k in range(steps + 1)]
    return {"run_dir": str(run_dir), "kind": config.kind, "method": config.method,
            "env": config.env, "checkpoint": checkpoint, "iteration": int(state["iteration"]),
            "tasks": num_tasks, "episodes": episodes, "seed": seed, "metric": "return",
            "step_sizes": step_sizes(config.inner_lr, steps, later_factor),
            "curve": {"steps": list(range(steps + 1)), "mean": [m for m, _ in stats],
                      "ci95": [c for _, c in stats]},
            "per_task": per_task.tolist()}


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
