"""Sampler throughput on 2D navigation, numpy env against torch env, measured in one run.

(a) ``metarl.rl.sampler.rollout`` on the numpy native env (the CPU default);
(t) the same on ``Navigation2DTorchVectorEnv`` (``vectorization: torch``, what a GPU
    run uses), here on the CPU;
(b) the same ``rollout`` through gymnasium's SyncVectorEnv of single envs;
(p) the policy alone: the forward pass and action sampling of every step, no env;
(c) the bare engine: ``navigation_step`` on (N, 2) arrays for the horizon, fixed
    actions, no policy.
Rates are env steps per second (steps that are data for (a), (t), (b); every step for
(p), (c)). The paper's settings by default: 20 tasks x 20 episodes x 100 steps, a
100-100 ReLU policy. Rounds are interleaved and the best of each kept.

    python experiments/bench/navigation_sampler.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from envs.navigation import Navigation2DFamily, navigation_step
from metarl.functional import call, expand_params, params_of
from metarl.models import GaussianPolicy
from metarl.rl.sampler import rollout, sample_action


def rollout_rate(env, policy, params, horizon: int, seed: int) -> float:
    start = time.perf_counter()
    episodes = rollout(env, policy, params, horizon, seed, torch.Generator().manual_seed(seed))
    return episodes.mask.sum().item() / (time.perf_counter() - start)


@torch.no_grad()
def policy_rate(policy, params, num_tasks: int, per_task: int, horizon: int) -> float:
    obs = torch.zeros(num_tasks, per_task, 2)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(horizon):
        sample_action(call(policy, params, obs), generator)
    return num_tasks * per_task * horizon / (time.perf_counter() - start)


def engine_rate(goals: np.ndarray, horizon: int) -> float:
    position, action = np.zeros_like(goals), np.full_like(goals, 0.3)
    start = time.perf_counter()
    for _ in range(horizon):
        position, *_ = navigation_step(position, action, goals)
    return len(goals) * horizon / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    family = Navigation2DFamily(max_episode_steps=args.horizon)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    envs = {name: family.make_vector_env(tasks, args.episodes, vectorization=name)
            for name in ("native", "torch", "sync")}
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, (100, 100))
    params = {k: v.detach().contiguous()
              for k, v in expand_params(params_of(policy), args.tasks).items()}
    goals = np.repeat(np.stack([t["goal"] for t in tasks]), args.episodes, axis=0)
    best = dict.fromkeys([*envs, "policy", "engine"], 0.0)
    for r in range(args.rounds):
        for name, env in envs.items():
            best[name] = max(best[name], rollout_rate(env, policy, params, args.horizon, r))
        best["policy"] = max(best["policy"], policy_rate(policy, params, args.tasks,
                                                         args.episodes, args.horizon))
        best["engine"] = max(best["engine"], engine_rate(goals, args.horizon))
    print(f"Navigation2D, T={args.tasks} x E={args.episodes}, H={args.horizon}, 100-100 "
          f"policy, 1 thread, best of {args.rounds} rounds; env steps / s:")
    print(f"  (a) rollout, numpy native env          {best['native']:10.0f}")
    print(f"  (t) rollout, torch env on the CPU      {best['torch']:10.0f}   t/a = "
          f"{best['torch'] / best['native']:.2f}")
    print(f"  (b) rollout, SyncVectorEnv             {best['sync']:10.0f}   a/b = "
          f"{best['native'] / best['sync']:.2f}")
    print(f"  (p) policy alone (forward + sampling)  {best['policy']:10.0f}   a/p = "
          f"{best['native'] / best['policy']:.2f}")
    print(f"  (c) bare navigation_step               {best['engine']:10.0f}   a/c = "
          f"{best['native'] / best['engine']:.2f}")


if __name__ == "__main__":
    main()
