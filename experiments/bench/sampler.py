"""Sampler throughput on HalfCheetahVel, measured in one run.

(a) ``metarl.rl.sampler.rollout`` on the native batched env, policy included;
(b) the same ``rollout`` through gymnasium's SyncVectorEnv of single envs;
(c) the ceiling: the same number of MjData stepped by ``mujoco.rollout`` with
    the same thread count and constant controls, the whole horizon in one call,
    no policy, no observations or rewards.
Rounds are interleaved and the best of each is kept (fair on a shared machine).

    python experiments/bench/sampler.py [--tasks 40 --episodes 20 --horizon 100 --threads 2]
"""

from __future__ import annotations

import argparse
import time

import mujoco
import mujoco.rollout
import numpy as np
import torch

from envs.mujoco.base import asset_path
from envs.mujoco.half_cheetah import HalfCheetahVelFamily
from metarl.functional import expand_params, params_of
from metarl.models import GaussianPolicy
from metarl.rl.sampler import rollout


def rollout_rate(env, policy, params, horizon: int, seed: int) -> float:
    start = time.perf_counter()
    episodes = rollout(env, policy, params, horizon, seed, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    return episodes.mask.sum().item() / seconds


def ceiling_rate(num_envs: int, horizon: int, threads: int, frame_skip: int = 5) -> float:
    model = mujoco.MjModel.from_xml_path(asset_path("half_cheetah.xml"))
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, mujoco.MjData(model), state, spec)
    initial = np.tile(state, (num_envs, 1))
    controls = np.full((num_envs, frame_skip * horizon, model.nu), 0.3)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    with mujoco.rollout.Rollout(nthread=threads) as pool:
        pool.rollout(model, datas, initial, controls[:, :frame_skip])  # start the threads
        start = time.perf_counter()
        pool.rollout(model, datas, initial, controls)
        return num_envs * horizon / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="MuJoCo threads")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    family = HalfCheetahVelFamily(max_episode_steps=args.horizon, num_threads=args.threads)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    native = family.make_vector_env(tasks, args.episodes)
    sync = family.make_vector_env(tasks, args.episodes, vectorization="sync")
    torch.manual_seed(0)
    obs_dim = native.single_observation_space.shape[0]
    act_dim = native.single_action_space.shape[0]
    policy = GaussianPolicy(obs_dim, act_dim, (64, 64))
    params = expand_params(params_of(policy), args.tasks)
    params = {k: v.detach().contiguous() for k, v in params.items()}

    best = {"native": 0.0, "sync": 0.0, "ceiling": 0.0}
    for r in range(args.rounds):
        best["native"] = max(best["native"], rollout_rate(native, policy, params, args.horizon, r))
        if r < 2:  # slow; two rounds are enough
            best["sync"] = max(best["sync"], rollout_rate(sync, policy, params, args.horizon, r))
        best["ceiling"] = max(best["ceiling"], ceiling_rate(native.num_envs, args.horizon,
                                                            args.threads))
    n = native.num_envs
    print(f"HalfCheetahVel, T={args.tasks} x E={args.episodes} = {n} envs, H={args.horizon}, "
          f"64-64 Gaussian policy, {args.threads} MuJoCo threads, best of {args.rounds} rounds")
    print(f"  (a) rollout, native batched env   {best['native']:9.0f} env-steps/s")
    print(f"  (b) rollout, SyncVectorEnv        {best['sync']:9.0f} env-steps/s")
    print(f"  (c) bare mujoco.rollout ceiling   {best['ceiling']:9.0f} env-steps/s")
    a_b, a_c = best["native"] / best["sync"], best["native"] / best["ceiling"]
    print(f"  a/b = {a_b:.2f}   a/c = {a_c:.2f}")
    native.close()
    sync.close()


if __name__ == "__main__":
    main()
