"""What does a policy do before adaptation? Episode length and reward terms per step.

Rolls out a checkpoint's policy (its meta-parameters, no inner step) on fresh tasks of
its run's family, with the run's env settings or some of them changed, and prints the
mean episode length (how long the agent stays healthy) and each reward term the env
reports in ``info`` (``reward_*``, ``x_velocity``), per running step. Made to find out
why AntDir did not learn: e.g. the same policy at the run's dt and at the MAML paper's.

    RUN=experiments/results/ant-dir/maml-rllab-reward-xavier-seed0
    python experiments/episode_terms.py $RUN/checkpoint.pt \
        --env-set frame_skip=5 --env-set frame_skip=2
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
import yaml

from metarl.rl.families import load_for_sampling, make_family
from metarl.rl.sampler import env_actions


def episode_terms(env, policy, horizon: int, seed: int) -> dict[str, float]:
    """Mean episode length and each info term per running step, for the policy's
    actions sampled as in training (Gaussian noise, clipped to the action space)."""
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    running = np.ones(env.num_envs, dtype=bool)
    lengths = np.zeros(env.num_envs)
    sums: dict[str, float] = {"return": 0.0}
    for _ in range(horizon):
        with torch.no_grad():
            dist = policy(torch.as_tensor(obs, dtype=torch.float32))
            noise = torch.randn(dist.mean.shape, generator=generator)
            actions = dist.mean + dist.stddev * noise
        obs, reward, terminated, truncated, info = env.step(
            env_actions(actions[None], env.single_action_space))
        lengths += running
        sums["return"] += float(np.sum(reward * running))
        for key, value in info.items():
            if key.startswith("reward_") or key.endswith("_velocity"):
                sums[key] = sums.get(key, 0.0) + float(np.sum(np.asarray(value) * running))
        running &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not running.any():
            break
    steps = lengths.sum()
    terms = {"length": lengths.mean(), "min length": lengths.min(),
             "return per episode": sums.pop("return") / env.num_envs}
    terms.update({f"{k} per step": v / steps for k, v in sums.items()})
    return terms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one env setting (YAML value); repeat for one row each")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=10, help="per task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    state, config, family, env, policy = load_for_sampling(args.checkpoint, rng)
    env.close()
    print(f"{args.checkpoint}: iteration {state['iteration']}, env_kwargs {config.env_kwargs}")
    for change in [None, *args.env_set]:
        label, kwargs = "as trained", dict(config.env_kwargs)
        if change is not None:
            key, _, value = change.partition("=")
            label, kwargs[key] = change, yaml.safe_load(value)
        family = make_family(dataclasses.replace(config, env_kwargs=kwargs))
        tasks = family.sample_tasks(np.random.default_rng(args.seed), args.tasks)
        env = family.make_vector_env(tasks, args.episodes)
        terms = episode_terms(env, policy, config.horizon, args.seed)
        env.close()
        print(f"{label}: " + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()))


if __name__ == "__main__":
    main()
