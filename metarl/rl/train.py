"""MAML-TRPO meta-training loop.

Reads top to bottom: build the policy and the vector env, restore a
checkpoint when resuming, then per iteration sample a meta-batch (tasks,
rollouts, adaptation), take the TRPO step, log, checkpoint. Everything random
derives from the run seed: the task generator (numpy) and the action
generator (torch) are saved in every checkpoint, so a resumed run repeats
the uninterrupted one exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from metarl.checkpoint import restore_rng, rng_state
from metarl.distributed import SINGLE_PROCESS, Shard
from metarl.functional import detach_params, params_of
from metarl.meta import MetaSGDRates
from metarl.models import CategoricalPolicy, GaussianPolicy, xavier_init_
from metarl.rl.evaluate import validation_returns
from metarl.rl.maml_trpo import meta_update, sample_meta_batch
from metarl.rl.sampler import EnvOutputError
from metarl.runs import Run, TrainingLoop, setup_torch
from metarl.schema import ConfigError


def build_policy(config, observation_space, action_space) -> torch.nn.Module:
    """Gaussian policy for Box actions, Categorical for Discrete; seeded from the run seed."""
    torch.manual_seed(config.seed)
    obs_dim = int(np.prod(observation_space.shape))
    hidden = tuple(config.hidden_sizes)
    if hasattr(action_space, "n"):
        policy = CategoricalPolicy(obs_dim, int(action_space.n), hidden, config.activation)
    else:
        policy = GaussianPolicy(obs_dim, int(np.prod(action_space.shape)), hidden,
                                config.activation, config.init_std)
    if config.policy_init == "xavier":
        xavier_init_(policy)
    return policy


def make_env(family, config, rng: np.random.Generator, shard: Shard = SINGLE_PROCESS):
    """The family's vector env over this process's block of the first meta-batch."""
    tasks = family.sample_tasks(rng, config.meta_batch_size)
    return family.make_vector_env(tasks[shard.tasks(len(tasks))], config.episodes_per_task)


def validation_due(config, iteration: int) -> bool:
    """Validate the parameters that sample iteration ``iteration`` (0-based)?"""
    return iteration % config.validate_every == 0 or iteration + 1 == config.iterations


def train(config, family, run_dir: str | Path, resume: bool = False,
          progress: bool = True, shard: Shard = SINGLE_PROCESS) -> dict[str, float]:
    """Meta-train a policy on ``family`` (an ``envs.base.TaskFamily``) into ``run_dir``.

    shard: this process's place when launched by torchrun (``metarl.distributed``):
    it samples and adapts its block of the tasks; only rank 0 writes ``run_dir``.
    """
    shard.tasks(config.meta_batch_size)  # at least one task per process
    if getattr(family, "split", "train") != "train":  # Meta-World's held-out goals / classes
        raise ConfigError(f"{family.name}: split {family.split!r} is held out for evaluation; "
                          "train on split 'train'")
    run = Run(run_dir, config, resume, writes=shard.is_main)
    device = setup_torch(config)
    rng = np.random.default_rng(config.seed)
    env = make_env(family, config, np.random.default_rng([config.seed, 1]), shard)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    policy.to(device)
    # Meta-SGD: learned inner rates, one per policy parameter, meta-learned with it.
    rates = MetaSGDRates(policy, config.inner_lr).to(device) if config.method == "metasgd" \
        else None
    generator = torch.Generator(device=device).manual_seed(config.seed)
    best = -float("inf")
    if run.start_state is not None:
        policy.load_state_dict(run.start_state["model"])
        if rates is not None:
            with torch.no_grad():
                for name, r in rates.as_dict().items():
                    r.copy_(run.start_state["inner_rates"][name])
        restore_rng(run.start_state["rng"], rng)
        generator.set_state(run.start_state["action_rng"])
        best = run.start_state["best_return"]

    def checkpoint(iteration: int, path_best: bool = False) -> None:
        shard.check_identical(params_of(policy))
        state = {"iteration": iteration, "model": policy.state_dict(), "rng": rng_state(rng),
                 "action_rng": generator.get_state(), "best_return": best}
        if rates is not None:
            state["inner_rates"] = detach_params(rates.as_dict())
        run.save(state, best=path_best)

    metrics: dict[str, float] = {}
    inner_steps = config.training_inner_steps
    with TrainingLoop(run, config, shard, progress, "MAML-TRPO") as loop:
        for iteration in loop:
            tick = time.perf_counter()
            tasks = family.sample_tasks(rng, config.meta_batch_size)
            env.set_tasks(tasks[shard.tasks(len(tasks))])
            seeds = [int(s) for s in rng.integers(2**31 - 1, size=inner_steps + 1)]
            try:
                batch, stats = sample_meta_batch(env, policy, config, seeds, generator, shard,
                                                 None if rates is None else rates.as_dict())
            except EnvOutputError as err:
                raise EnvOutputError(f"iteration {iteration + 1}: {err}; the run's last "
                                     "checkpoint stays as it was") from None
            post = stats[f"return/after_{inner_steps}_steps"]
            if config.validation_tasks is None and post > best:
                best = post  # the paper evaluates the best iterate: these are its parameters
                checkpoint(iteration, path_best=True)
            if config.validation_tasks is not None and validation_due(config, iteration):
                curve = validation_returns(policy, family, config,
                                           None if rates is None else rates.as_dict())
                run.log(iteration + 1, {f"validation/return_after_{k}_steps": float(value)
                                        for k, value in enumerate(curve)})  # log_every or not
                if curve[1:].mean() > best:  # every rank alike: the same tasks and seeds
                    best = float(curve[1:].mean())
                    checkpoint(iteration, path_best=True)
            outer_tick = time.perf_counter()
            if config.method != "random":  # the random baseline keeps its initialisation
                stats.update(meta_update(policy, batch, config, shard, rates))
            stats["time/outer_step"] = time.perf_counter() - outer_tick
            stats["time/iteration"] = time.perf_counter() - tick
            stats["env_steps_per_second"] = stats.pop("env_steps") / stats["time/sampling"]

            loop.bar.set_postfix(pre=f"{stats['return/after_0_steps']:.2f}", post=f"{post:.2f}")
            if loop.log_due(iteration + 1):
                run.log(iteration + 1, stats)
            metrics = stats
            loop.end(iteration + 1, checkpoint)
    env.close()
    loop.finish({"final/return_before": metrics.get("return/after_0_steps", float("nan")),
                 "final/return_after": metrics.get(f"return/after_{inner_steps}_steps",
                                                   float("nan"))})
    return {k: v for k, v in metrics.items() if k.startswith("return/")}
