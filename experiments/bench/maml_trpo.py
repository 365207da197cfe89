"""Where a MAML-TRPO meta-iteration spends its time, measured in one run.

On one real meta-batch of a config (default: 2D navigation, the paper's
settings): seconds for sampling + adaptation, the meta-gradient of the
surrogate through the adaptation, one Fisher-vector product computed (a) by
differentiating the KL's gradient through the adaptation (third order) and
(b) by metarl's structured product J^T F J (second order), with their ratio
and the largest difference between the two, and a whole TRPO step.

    python experiments/bench/maml_trpo.py [--config experiments/configs/navigation-2d.yaml]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from metarl.cli import make_family
from metarl.config import load_config
from metarl.functional import call, flatten, params_of, unflatten
from metarl.rl.fisher import adaptation_fisher_product
from metarl.rl.losses import inner_loss, mean_kl, surrogate_loss
from metarl.rl.maml_trpo import adapt_policy, meta_update, sample_meta_batch
from metarl.rl.train import build_policy, make_env
from metarl.rl.trpo import fisher_vector_product


def seconds(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/navigation-2d.yaml")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = load_config(args.config, [f"threads={args.threads}"])
    torch.set_num_threads(args.threads)
    family = make_family(config)
    env = make_env(family, config, np.random.default_rng(0))
    policy = build_policy(config, env.single_observation_space, env.single_action_space)
    generator = torch.Generator().manual_seed(0)

    start = time.perf_counter()
    batch, stats = sample_meta_batch(env, policy, config, [1, 2], generator)
    sample_seconds = time.perf_counter() - start
    meta = {k: v.detach() for k, v in params_of(policy).items()}
    old = call(policy, batch.valid_params, batch.valid.obs)
    flat = flatten(meta).clone().requires_grad_()

    def adapted():
        return adapt_policy(policy, unflatten(flat, meta), batch.train, config)

    def meta_gradient():
        loss = surrogate_loss(policy, adapted(), batch.valid, batch.valid_advantages,
                              batch.valid_log_probs)
        return torch.autograd.grad(loss, flat)[0]

    vector = meta_gradient()
    kl = lambda: mean_kl(old, call(policy, adapted(), batch.valid.obs), batch.valid.mask)
    brute = fisher_vector_product(kl, [flat], damping=0.0)
    fast = adaptation_fisher_product(policy, meta, batch.train, inner_loss(config.inner_objective),
                                     config.inner_lr, config.first_order, batch.valid, old)
    difference = (brute(vector) - fast(vector)).abs().max().item()
    scale = brute(vector).abs().max().item()
    times = {
        "sampling + adaptation": sample_seconds,
        "meta-gradient": seconds(meta_gradient),
        "FVP setup, through adaptation": seconds(lambda: fisher_vector_product(kl, [flat], 0.0)),
        "FVP, through adaptation (3rd order)": seconds(lambda: brute(vector)),
        "FVP setup, structured": seconds(lambda: adaptation_fisher_product(
            policy, meta, batch.train, inner_loss(config.inner_objective), config.inner_lr,
            config.first_order, batch.valid, old)),
        "FVP, structured J^T F J": seconds(lambda: fast(vector)),
    }
    start = time.perf_counter()
    meta_update(policy, batch, config)
    times["whole TRPO step"] = time.perf_counter() - start
    steps = int(stats["env_steps"])
    print(f"{args.config}: T={config.meta_batch_size}, E={config.episodes_per_task}, "
          f"H={config.horizon}, {steps} env steps, {args.threads} threads")
    for name, value in times.items():
        print(f"  {name:38s} {value:7.3f} s")
    ratio = times["FVP, through adaptation (3rd order)"] / times["FVP, structured J^T F J"]
    print(f"  structured FVP speed-up: {ratio:.2f}x; max |difference| {difference:.2e} "
          f"(scale {scale:.2e})")


if __name__ == "__main__":
    main()
