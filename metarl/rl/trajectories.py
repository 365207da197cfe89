"""What a 2D-navigation policy does before and after adaptation: its paths to held-out goals.

As the MAML paper's navigation figure: for a few held-out goals, the paths of
the meta-trained policy before adaptation and after each inner step (the
evaluation's protocol: fresh episodes per step, alpha then alpha * later_factor).
Navigation's observation is the point's position, so the paths are the
observations while the episode runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metarl.plot import plt
from metarl.rl.evaluate import adapted_rollouts, inner_rates, load_policy


def adaptation_paths(policy, family, config, num_tasks: int, episodes: int, steps: int,
                     seed: int, later_factor: float = 0.5, rates: dict | None = None):
    """(goals (T, 2), per step k = 0..steps a list over tasks of E paths, each (n_k, 2))."""
    paths, goals = [], None
    for tasks, _, batch in adapted_rollouts(policy, family, config, num_tasks, episodes, steps,
                                         seed, later_factor, rates,
                                         samples=config.eval_samples):
        goals = np.stack([np.asarray(t["goal"], dtype=np.float64) for t in tasks])
        obs, mask = batch.obs.cpu().numpy(), batch.mask.cpu().numpy() > 0
        paths.append([[obs[t, e][mask[t, e]] for e in range(obs.shape[1]) if mask[t, e, 0]]
                      for t in range(obs.shape[0])])
    return goals, paths


def plot_trajectories(run_dir: str | Path, family, out: str | Path, num_tasks: int = 4,
                      steps: int = 3, seed: int = 12345, checkpoint: str = "best.pt",
                      later_factor: float = 0.5, drawn: int = 1) -> Path:
    """One panel per held-out goal, ``drawn`` paths per inner step; writes ``out`` (PNG).

    Each step adapts on the evaluation's episodes (``eval_episodes``, else
    ``episodes_per_task``); the first ``drawn`` of them are drawn.
    """
    config, state, policy = load_policy(run_dir, family, checkpoint)
    episodes = config.eval_episodes or config.episodes_per_task
    if config.env != "Navigation2D":
        raise ValueError(f"trajectories are drawn for Navigation2D runs, {run_dir} is "
                         f"{config.env}")
    goals, paths = adaptation_paths(policy, family, config, num_tasks, episodes, steps, seed,
                                    later_factor, inner_rates(state))
    fig, axes = plt.subplots(1, num_tasks, figsize=(3.2 * num_tasks, 3.8), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, steps + 1))
    for t, ax in enumerate(axes[0]):
        for k in range(steps + 1):
            for e, path in enumerate(paths[k][t][:drawn]):
                label = ("before adaptation" if k == 0 else f"after {k} step{'s' * (k > 1)}")
                ax.plot(path[:, 0], path[:, 1], color=colours[k], lw=1.4,
                        label=label if e == 0 else None)
        ax.plot(*goals[t], marker="*", color="crimson", ms=14, ls="none", label="goal")
        ax.plot(0.0, 0.0, marker="o", color="black", ms=4, ls="none")
        points = np.concatenate([p for k in range(steps + 1) for p in paths[k][t][:drawn]]
                                + [goals[t][None], np.zeros((1, 2))])
        low, high = min(points.min(), -0.6), max(points.max(), 0.6)  # the goals' square, at least
        ax.set_xlim(low - 0.05, high + 0.05)
        ax.set_ylim(low - 0.05, high + 0.05)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.set_title(f"goal ({goals[t][0]:+.2f}, {goals[t][1]:+.2f})", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"{Path(run_dir).name}, {checkpoint} (iteration {state['iteration']}): "
                 f"paths from the start (black dot), adapted on {episodes} episodes per step",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
