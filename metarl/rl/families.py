"""Where a task family from ``envs`` is wired into RL training, evaluation and analyses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metarl.config import ConfigError, load_config


def _on_gpu(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def make_family(config):
    """The one place where a task family from ``envs`` is wired into training."""
    from envs.registration import get_family

    kwargs = dict(config.env_kwargs)
    if ":" not in config.env:  # built-in families take the horizon as their time limit
        kwargs.setdefault("max_episode_steps", config.horizon)
    try:
        family = get_family(config.env, **kwargs)
    except (ValueError, TypeError, ImportError) as err:
        raise ConfigError(f"config key 'env' / 'env_kwargs': {err}") from None
    if getattr(family, "torch_vector_env_cls", None) and "vectorization" not in kwargs \
            and config.method != "oracle" and _on_gpu(config.device):
        family.vectorization = "torch"  # its rollouts never leave the GPU
    if config.method == "oracle":
        if getattr(family, "vectorization", None) == "torch":
            raise ConfigError("config key 'env_kwargs': the oracle appends numpy task "
                              "features; use vectorization 'native' with method 'oracle'")
        from envs.oracle import OracleFamily

        family = OracleFamily(family)
    return family


def load_for_sampling(checkpoint: str | Path, rng):
    """(state, config, family, env, policy) of an RL checkpoint file, for analyses:
    the policy holds the checkpoint's parameters, the env a first meta-batch of
    tasks drawn from ``rng`` (a ``numpy.random.Generator``)."""
    from metarl.checkpoint import load_checkpoint
    from metarl.rl.train import build_policy, make_env

    state = load_checkpoint(checkpoint)
    config = load_config(data=state["config"])
    if config.kind != "rl":
        raise ConfigError(f"{checkpoint}: a {config.kind} checkpoint, not an RL one")
    family = make_family(config)
    env = make_env(family, config, rng)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    policy.load_state_dict(state["model"])
    return state, config, family, env, policy


def checkpoint_meta_batches(checkpoint: str | Path, count: int, seed: int = 2026):
    """(state, config, policy, batches) for analyses of the outer step: ``batches`` yields
    ``count`` meta-batches (``maml_trpo.MetaBatch``) of fresh tasks, sampled and adapted
    as in training by the checkpoint's policy; the env closes after the last."""
    from metarl.rl.maml_trpo import sample_meta_batch

    rng = np.random.default_rng(seed)
    state, config, family, env, policy = load_for_sampling(checkpoint, rng)
    generator = torch.Generator().manual_seed(0)

    def batches():
        try:
            for _ in range(count):
                env.set_tasks(family.sample_tasks(rng, config.meta_batch_size))
                seeds = [int(s) for s in rng.integers(2**31 - 1, size=config.inner_steps + 1)]
                yield sample_meta_batch(env, policy, config, seeds, generator)[0]
        finally:
            env.close()

    return state, config, policy, batches()

