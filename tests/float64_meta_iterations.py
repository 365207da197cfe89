"""Run a few MAML-TRPO meta-iterations in float64, as the training loop does, on 1 or
several processes (torchrun's variables), and save the final parameters.

    python tests/float64_meta_iterations.py OUT.pt ITERATIONS [KEY=VALUE ...]
Used by tests/test_distributed.py.
"""

import sys

import numpy as np
import torch

from metarl.config import load_config
from metarl.distributed import close_shard, init_shard
from metarl.rl.families import make_family
from metarl.rl.maml_trpo import meta_update, sample_meta_batch
from metarl.rl.train import build_policy, make_env


def main(out: str, iterations: int, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    config = load_config("experiments/configs/navigation-2d.yaml", overrides)
    shard = init_shard(torch.device("cpu"))
    family = make_family(config)
    rng = np.random.default_rng(config.seed)
    env = make_env(family, config, np.random.default_rng([config.seed, 1]), shard)
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    policy.double()
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(iterations):
        tasks = family.sample_tasks(rng, config.meta_batch_size)
        env.set_tasks(tasks[shard.tasks(len(tasks))])
        seeds = [int(s) for s in rng.integers(2**31 - 1, size=config.inner_steps + 1)]
        batch, _ = sample_meta_batch(env, policy, config, seeds, generator, shard)
        meta_update(policy, batch, config, shard)
    if shard.is_main:
        torch.save(policy.state_dict(), out)
    close_shard()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
