"""Sampler throughput on Meta-World, measured in one run (needs the metaworld extra).

(a) ``metarl.rl.sampler.rollout`` on the family's default vector env: ``workers``
    processes, each stepping a block of the envs (``envs.process_vector``), policy
    included;
(b) the same ``rollout`` through one ``SyncVectorEnv`` of the same envs;
(b') (b) with Meta-World's own functions where ``envs.metaworld_patches`` replaces
    them (the gripper-contact test, the observation's assembly, the objects'
    quaternion, the reward terms' ``tolerance``; same results, tested);
(c) the engine underneath: the same number of simulations of the task's MuJoCo model
    stepped by ``mujoco.batch.Batch`` (``sampler.ceiling_rate``: frame skip 5, zero
    controls, no policy, no Meta-World Python: observations, rewards, mocap), all threads.
Rates are env steps per second; rounds are interleaved and the best kept.

    python experiments/bench/metaworld_sampler.py --env-name push-v3
    python experiments/bench/metaworld_sampler.py --benchmark ML10 --horizon 200

For ML10 / ML45 the tasks mix classes; (c) then steps the first task's model.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from sampler import ceiling_rate, rollout_rate  # experiments/bench/sampler.py

from envs.metaworld import MetaWorldFamily
from envs.metaworld_patches import MetaWorldOwn
from metarl.functional import expand_params, params_of
from metarl.models import GaussianPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=["ML1", "ML10", "ML45"], default="ML1")
    parser.add_argument("--env-name", default="push-v3", help="the ML1 class")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workers = len(os.sched_getaffinity(0))

    env_name = args.env_name if args.benchmark == "ML1" else None
    family = MetaWorldFamily(args.benchmark, env_name, max_episode_steps=args.horizon)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    envs = {"processes": family.make_vector_env(tasks, args.episodes),
            "sync": MetaWorldFamily(args.benchmark, env_name, max_episode_steps=args.horizon,
                                    vectorization="sync").make_vector_env(tasks, args.episodes)}
    probe = family.make_env(tasks[0])
    model = probe.unwrapped._env.model
    torch.manual_seed(0)
    policy = GaussianPolicy(probe.observation_space.shape[0], probe.action_space.shape[0],
                            (512, 512), "tanh")
    params = {k: v.detach().contiguous()
              for k, v in expand_params(params_of(policy), args.tasks).items()}
    best = {"processes": 0.0, "sync": 0.0, "sync-old": 0.0, "engine": 0.0}
    for r in range(args.rounds):
        for name, env in envs.items():
            best[name] = max(best[name], rollout_rate(env, policy, params, args.horizon, r)[0])
        with MetaWorldOwn():  # this process's envs only: the sync ones
            old = rollout_rate(envs["sync"], policy, params, args.horizon, r)[0]
        best["sync-old"] = max(best["sync-old"], old)
        best["engine"] = max(best["engine"], ceiling_rate(model, args.tasks * args.episodes,
                                                          args.horizon, workers, frame_skip=5,
                                                          control=0.0))
    print(f"Meta-World {args.benchmark} {env_name or 'mixed classes'}, T={args.tasks} x "
          f"E={args.episodes} envs, "
          f"H={args.horizon}, 512-512 tanh policy, {workers} CPUs, best of {args.rounds}")
    print(f"  (a) rollout, {workers} worker processes   {best['processes']:8.0f} steps/s")
    print(f"  (b) rollout, SyncVectorEnv            {best['sync']:8.0f} steps/s")
    print(f"  (b') the same, Meta-World's own functions {best['sync-old']:4.0f} steps/s "
          f"(b/b' = {best['sync'] / best['sync-old']:.2f})")
    print(f"  (c) bare mujoco.batch, same model     {best['engine']:8.0f} steps/s")
    print(f"  a/b = {best['processes'] / best['sync']:.2f}   "
          f"a/c = {best['processes'] / best['engine']:.3f}")
    for env in envs.values():
        env.close()
    probe.close()


if __name__ == "__main__":
    main()
