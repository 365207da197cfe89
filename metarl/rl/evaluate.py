"""Adaptation curves of a meta-trained policy: returns after 0..K inner steps.

Protocol (MAML paper, section 5.3): held-out tasks sampled with their own
seed; at every step fresh episodes are rolled out with the policy adapted so
far, then one policy-gradient step is taken on them, with step size alpha for
the first step and alpha / 2 after (configurable). All tasks are batched.

How many episodes: E per task and step, or, with ``samples``, whole episodes
until each task has at least that many steps, as the paper's test scripts
collect them (rllab's sampler, 4000 steps per update): once episodes end at the
goal, E episodes hold fewer steps than that. Which episodes spend the budget
(unbiased, or as rllab's lockstep sampler did): ``metarl.rl.sample_budget``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from metarl.evaluate import load_run, mean_ci95, step_sizes, with_inner_lr
from metarl.functional import detach_params, expand_params, params_of
from metarl.rl.adaptation import inner_names_of, inner_step
from metarl.rl.episodes import Episodes
from metarl.rl.losses import inner_loss
from metarl.rl.maml_trpo import advantages
from metarl.rl.sample_budget import SELECTIONS, sample_episodes, sample_in_lockstep
from metarl.schema import ConfigError

VALIDATION_SEED = 54321  # + the run seed; evaluation's default seed is 12345
# Tasks adapted at once under a sample budget: E grows with the rounds the
# shortest-episode task needs (up to samples / its episode length), for all tasks.
BUDGET_CHUNK = 50


def episode_weights(episodes: Episodes) -> Tensor:
    """(T, E): 1 for the episodes that count, 0 for those masked out (no valid step)."""
    return episodes.mask[..., 0]


def per_episode_mean(values: Tensor, episodes: Episodes) -> Tensor:
    """Mean of (T, E) per-episode ``values`` over each task's counted episodes: (T,)."""
    weights = episode_weights(episodes)
    return (values * weights).sum(1) / weights.sum(1)


def tasks_family(family, held_out: bool):
    """The family to draw evaluation tasks from: its held-out tasks (``held_out()``,
    Meta-World's test split) when it has them and ``held_out``, else the family."""
    return family.held_out() if held_out and hasattr(family, "held_out") else family


def adapted_rollouts(policy: nn.Module, family, config, num_tasks: int, episodes: int,
                     steps: int, seed: int, later_factor: float = 0.5,
                     rates: dict | None = None, held_out: bool = True,
                     samples: int | None = None, tasks: list | None = None,
                     selection: str = "first"):
    """Yield (tasks, params, Episodes (T, E, H, ...)) after 0..steps inner steps on fresh
    held-out tasks: the stacked parameters (T, ...) each step's episodes were run with.

    tasks: these instead of ``num_tasks`` drawn from ``seed``, which then seeds only the
    rollouts.

    episodes: E per task and step; with ``samples``, the round size of
    ``sample_episodes`` (E varies with the step then; ``episode_weights`` says which count).
    selection: with ``samples``, which episodes spend the budget (``sample_budget``):
    ``first`` (unbiased) or ``lockstep`` (rllab's sampler, as the MAML paper measured);
    with ``lockstep``, ``episodes`` is its number of envs per task.

    rates: Meta-SGD's learned rates (``inner_rates``), in place of ``config.inner_lr``.
    A family with held-out tasks of its own (``held_out()``: Meta-World's test split)
    is evaluated on them; ``held_out=False`` draws from the training tasks instead
    (validation during training must not see the test split)."""
    family = tasks_family(family, held_out)
    rng = np.random.default_rng(seed)
    if tasks is None:
        tasks = family.sample_tasks(rng, num_tasks)
    num_tasks = len(tasks)
    lockstep = samples is not None and selection == "lockstep"
    env = None if lockstep else family.make_vector_env(tasks, episodes)
    generator = torch.Generator().manual_seed(seed)
    loss = inner_loss(config.inner_objective)
    params = detach_params(expand_params(params_of(policy), num_tasks))
    rates = step_sizes(rates or config.inner_lr, steps, later_factor)
    inner_names = inner_names_of(policy, config)
    try:
        for step in range(steps + 1):
            if lockstep:
                episodes_k = sample_in_lockstep(family, tasks, policy, params, config.horizon,
                                                episodes, samples, rng, generator)
            else:
                episodes_k = sample_episodes(env, policy, params, config.horizon, rng,
                                             generator, samples)
            yield tasks, params, episodes_k
            if step == steps:
                break
            adv = advantages(episodes_k, config.gamma, config.gae_lambda)
            params = inner_step(policy, params, episodes_k, adv, loss, rates[step], inner_names)
    finally:
        if env is not None:
            env.close()


def adaptation_returns(policy: nn.Module, family, config, num_tasks: int, episodes: int,
                       steps: int, seed: int, later_factor: float = 0.5,
                       rates: dict | None = None, samples: int | None = None) -> np.ndarray:
    """Mean episode return per task after 0..steps inner steps: (num_tasks, steps + 1)."""
    return adaptation_curves(policy, family, config, num_tasks, episodes, steps, seed,
                             later_factor, rates, samples=samples)[0]


def adaptation_curves(policy: nn.Module, family, config, num_tasks: int, episodes: int,
                      steps: int, seed: int, later_factor: float = 0.5,
                      rates: dict | None = None, held_out: bool = True,
                      samples: int | None = None, selection: str = "first"):
    """(returns, success, tasks): per task after 0..steps inner steps, each
    (num_tasks, steps + 1); success is the share of successful episodes, None when
    the env reports no success.

    With ``samples``, or when the T x E envs exceed the family's ``max_envs`` (Meta-World's
    memory), the tasks drawn from ``seed`` are adapted in chunks (``BUDGET_CHUNK`` tasks,
    or as many as ``max_envs`` holds), chunk c with rollout seed ``seed + 1 + c``.
    selection: see ``adapted_rollouts``."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    max_envs = getattr(family, "max_envs", None)
    if samples is None and (max_envs is None or num_tasks * episodes <= max_envs):
        return _curves(adapted_rollouts(policy, family, config, num_tasks, episodes, steps,
                                        seed, later_factor, rates, held_out))
    chunk = BUDGET_CHUNK if samples is not None else num_tasks
    if max_envs is not None:
        chunk = min(chunk, max(1, max_envs // episodes))
    family = tasks_family(family, held_out)
    tasks = family.sample_tasks(np.random.default_rng(seed), num_tasks)
    chunks = [_curves(adapted_rollouts(policy, family, config, 0, episodes, steps,
                                       seed + 1 + c, later_factor, rates, False, samples,
                                       tasks[start:start + chunk], selection))
              for c, start in enumerate(range(0, num_tasks, chunk))]
    success = None if chunks[0][1] is None else np.concatenate([c[1] for c in chunks])
    return np.concatenate([c[0] for c in chunks]), success, tasks


def _curves(rollouts):
    """(returns, success, tasks) of one ``adapted_rollouts`` generator."""
    returns, success, tasks = [], [], None
    for step_tasks, _, episodes_k in rollouts:
        tasks = step_tasks  # the same held-out tasks at every step
        returns.append(per_episode_mean(episodes_k.returns(), episodes_k).cpu().numpy())
        if episodes_k.success is not None:
            success.append(per_episode_mean(episodes_k.success, episodes_k).cpu().numpy())
    return (np.stack(returns, axis=1), np.stack(success, axis=1) if success else None,
            tasks)


def validation_returns(policy: nn.Module, family, config,
                       rates: dict | None = None) -> np.ndarray:
    """Mean return after 0..``validation_steps`` inner steps, (steps + 1,), on the run's
    fixed validation tasks: ``validation_tasks`` training-distribution tasks drawn from
    their own seed (neither the training meta-batches' nor ``metarl evaluate``'s), with
    the evaluation's step sizes and episodes (``eval_episodes``, ``eval_samples``)."""
    steps = config.validation_steps or config.inner_steps
    episodes = config.eval_episodes or config.episodes_per_task
    returns, _, _ = adaptation_curves(policy, family, config, config.validation_tasks,
                                      episodes, steps, VALIDATION_SEED + config.seed,
                                      rates=rates, held_out=False,
                                      samples=config.eval_samples)
    return returns.mean(axis=0)


def success_summary(success: np.ndarray, tasks: list) -> dict:
    """Mean success after every step ± 95% interval over tasks, and per class (Meta-World)."""
    stats = [mean_ci95(success[:, k]) for k in range(success.shape[1])]
    out = {"steps": list(range(success.shape[1])), "mean": [m for m, _ in stats],
           "ci95": [c for _, c in stats]}
    names = [t.get("env_name") for t in tasks]
    if any(n is not None for n in names):
        out["per_class"] = {n: success[[i for i, m in enumerate(names) if m == n]]
                            .mean(axis=0).tolist() for n in sorted(set(names))}
    return out


def inner_rates(state: dict) -> dict | None:
    """A checkpoint's learned inner rates by parameter name (Meta-SGD), else None."""
    return state.get("inner_rates")


def load_policy(run_dir: str | Path, family, checkpoint: str):
    """(config, checkpoint state, policy with the checkpoint's parameters) of an RL run."""
    from metarl.rl.train import build_policy

    config, state = load_run(run_dir, checkpoint)
    probe = family.make_env()
    policy = build_policy(config, probe.observation_space, probe.action_space)
    probe.close()
    policy.load_state_dict(state["model"])
    return config, state, policy


def evaluate_rl(run_dir: str | Path, family, steps: int = 3, num_tasks: int = 40,
                episodes: int | None = None, seed: int = 12345, later_factor: float = 0.5,
                checkpoint: str = "best.pt", inner_lr: float | None = None,
                samples: int | None = None, held_out: bool = True,
                selection: str = "first") -> dict:
    """Returns after 0..steps inner steps on held-out tasks of a MAML-TRPO run.

    inner_lr: the first step's size (None: the trained one); later steps are
    ``later_factor`` times it. episodes, samples: None takes the run's
    ``eval_episodes`` (else ``episodes_per_task``) and ``eval_samples``.
    held_out: False draws the tasks from the training tasks (Meta-World's train split).
    selection: how ``samples`` is spent (``sample_budget``): ``first``, the unbiased first
    episodes, or ``lockstep``, as rllab's sampler did (the MAML paper's figures) with
    ``episodes`` envs per task.
    """
    config, state, policy = load_policy(run_dir, family, checkpoint)
    config = with_inner_lr(config, inner_lr)
    if episodes is None:
        episodes = config.eval_episodes or config.episodes_per_task
    if samples is None:
        samples = config.eval_samples
    if selection == "lockstep" and samples is None:
        raise ConfigError("--lockstep spends a sample budget: give --samples (or the run's "
                          "eval_samples)")
    per_task, success, tasks = adaptation_curves(policy, family, config, num_tasks, episodes,
                                                 steps, seed, later_factor, inner_rates(state),
                                                 held_out, samples, selection)
    stats = [mean_ci95(per_task[:, k]) for k in range(steps + 1)]
    return {"run_dir": str(run_dir), "kind": config.kind, "method": config.method,
            "env": config.env, "checkpoint": checkpoint, "iteration": int(state["iteration"]),
            "tasks": num_tasks, "split": "test" if held_out else "train",
            "episodes": episodes, "samples": samples,
            "selection": selection if samples is not None else None, "seed": seed,
            "metric": "return",
            "step_sizes": (step_sizes(config.inner_lr, steps, later_factor)
                           if inner_rates(state) is None else "learned (Meta-SGD)"),
            "curve": {"steps": list(range(steps + 1)), "mean": [m for m, _ in stats],
                      "ci95": [c for _, c in stats]},
            "per_task": per_task.tolist(),
            **({} if success is None else {"success": success_summary(success, tasks),
                                           "per_task_success": success.tolist()})}
