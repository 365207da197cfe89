"""Sampler throughput on a MuJoCo family (HalfCheetahVel or AntVel), measured in one run.

(a) ``metarl.rl.sampler.rollout`` on the native batched env, policy included;
    episodes that end early (Ant falls) are held, not simulated;
(a') the same with ended episodes autoreset and simulated to the horizon, as
    before holding existed (Ant only; HalfCheetah never ends early);
(b) the same ``rollout`` through gymnasium's SyncVectorEnv of single envs;
(c) the ceiling: the same number of simulations of the env's own model stepped by
    ``mujoco.batch.Batch.rollout`` with the same thread count and constant controls,
    the whole horizon in one call: no policy, no observations or rewards.
Rates are env steps per second; (a), (a') and (b) count the steps that are data
(before an episode's end), (c) every step it simulates. Rounds are interleaved and
the best of each is kept (fair on a shared machine).

    python experiments/bench/sampler.py --env AntVel --horizon 200 --hidden 100,100
    python experiments/bench/sampler.py --env AntVel --horizon 200 --hidden 100,100 \
        --env-set model=rllab --env-set observation=rllab   # the MAML paper's Ant
"""

from __future__ import annotations

import argparse
import time

import mujoco
import mujoco.batch
import numpy as np
import torch
import yaml

from envs.mujoco.ant import AntVelFamily
from envs.mujoco.half_cheetah import HalfCheetahVelFamily
from metarl.functional import expand_params, params_of
from metarl.models import GaussianPolicy
from metarl.rl.sampler import rollout

FAMILIES = {"HalfCheetahVel": HalfCheetahVelFamily, "AntVel": AntVelFamily}


class Autoreset:
    """A native env seen without ``metadata["hold_ended"]``: the sampler lets it autoreset."""

    def __init__(self, env):
        self._env = env
        self.metadata = {k: v for k, v in env.metadata.items() if k != "hold_ended"}

    def __getattr__(self, name):
        return getattr(self._env, name)


def rollout_rate(env, policy, params, horizon: int, seed: int) -> tuple[float, float]:
    """(kept env steps / s, kept share of all steps)."""
    start = time.perf_counter()
    episodes = rollout(env, policy, params, horizon, seed, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    return episodes.mask.sum().item() / seconds, episodes.mask.mean().item()


def ceiling_rate(model: mujoco.MjModel, num_envs: int, horizon: int, threads: int,
                 frame_skip: int, control: float = 0.3) -> float:
    batch = mujoco.batch.Batch(model, num_envs, nthread=threads)
    batch.reset()
    controls = np.full((num_envs, frame_skip * horizon, model.nu), control)
    batch.rollout(frame_skip, control=controls[:, :frame_skip])  # start the threads
    start = time.perf_counter()
    batch.rollout(frame_skip * horizon, control=controls)
    return num_envs * horizon / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=sorted(FAMILIES), default="HalfCheetahVel")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--hidden", default="64,64", help="policy hidden sizes")
    parser.add_argument("--threads", type=int, default=2, help="MuJoCo threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env-set", action="append", default=[], metavar="KEY=VALUE",
                        help="one env setting (YAML value), e.g. model=rllab; repeatable")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env_kwargs = {}
    for change in args.env_set:
        key, _, value = change.partition("=")
        env_kwargs[key] = yaml.safe_load(value)

    family = FAMILIES[args.env](max_episode_steps=args.horizon, num_threads=args.threads,
                                **env_kwargs)
    tasks = family.sample_tasks(np.random.default_rng(0), args.tasks)
    native = family.make_vector_env(tasks, args.episodes)
    sync = family.make_vector_env(tasks, args.episodes, vectorization="sync")
    torch.manual_seed(0)
    obs_dim = native.single_observation_space.shape[0]
    act_dim = native.single_action_space.shape[0]
    hidden = tuple(int(h) for h in args.hidden.split(","))
    policy = GaussianPolicy(obs_dim, act_dim, hidden)
    params = expand_params(params_of(policy), args.tasks)
    params = {k: v.detach().contiguous() for k, v in params.items()}

    frame_skip = native.frame_skip
    variants = {"native": native, "autoreset": Autoreset(native), "sync": sync}
    best = {name: 0.0 for name in [*variants, "ceiling"]}
    kept = {}
    for r in range(args.rounds):
        for name, env in variants.items():
            if name == "sync" and r >= 2:  # slow; two rounds are enough
                continue
            rate, kept[name] = rollout_rate(env, policy, params, args.horizon, r)
            best[name] = max(best[name], rate)
        best["ceiling"] = max(best["ceiling"], ceiling_rate(native.model, native.num_envs,
                                                            args.horizon, args.threads,
                                                            frame_skip))
    n = native.num_envs
    print(f"{args.env} {env_kwargs or ''}, dt {native.dt:g} s ({frame_skip} physics steps), "
          f"T={args.tasks} x E={args.episodes} = {n} envs, H={args.horizon}, "
          f"{args.hidden} Gaussian policy, {args.threads} MuJoCo threads, best of "
          f"{args.rounds} rounds; {kept['native']:.0%} of the steps before episodes end")
    print(f"  (a)  rollout, native env, ended episodes held   {best['native']:9.0f} steps/s")
    print(f"  (a') rollout, native env, ended ones autoreset  {best['autoreset']:9.0f} steps/s")
    print(f"  (b)  rollout, SyncVectorEnv                     {best['sync']:9.0f} steps/s")
    print(f"  (c)  bare mujoco.batch rollout ceiling          {best['ceiling']:9.0f} steps/s")
    print(f"  a/a' = {best['native'] / best['autoreset']:.2f}   "
          f"a/b = {best['native'] / best['sync']:.2f}   "
          f"a'/c = {best['autoreset'] / best['ceiling'] / kept['native']:.2f} "
          f"(every simulated step counted, against the ceiling)")
    native.close()
    sync.close()


if __name__ == "__main__":
    main()
