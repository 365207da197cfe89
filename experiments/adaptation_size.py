"""How far does one inner step move the policy? A diagnostic for MAML-RL checkpoints.

For each checkpoint, samples one meta-batch as in training (fresh tasks, the
run's settings) and prints the returns before and after the inner steps, the
mean KL(pre-update || adapted) on the episodes the step was taken on, the mean
absolute change of the action mean, the policy's standard deviations and the
norm of the step per parameter tensor (mean over tasks). A step that grows
during meta-training while the post-adaptation return falls is overshooting.

    RUN=experiments/results/halfcheetah-dir/maml-fisher25-seed0
    python experiments/adaptation_size.py $RUN/best.pt $RUN/checkpoint.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from metarl.functional import call, detach_params, expand_params, params_of
from metarl.rl.families import load_for_sampling
from metarl.rl.losses import mean_kl
from metarl.rl.maml_trpo import sample_meta_batch


def describe(path: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    state, config, _, env, policy = load_for_sampling(path, rng)
    steps = config.training_inner_steps
    if steps == 0:
        raise SystemExit(f"{path}: method {config.method} takes no inner step in training")
    seeds = [int(s) for s in rng.integers(2**31 - 1, size=steps + 1)]
    generator = torch.Generator().manual_seed(seed)
    batch, stats = sample_meta_batch(env, policy, config, seeds, generator)
    env.close()
    meta = detach_params(params_of(policy))
    first = batch.train[0][0]  # the episodes of the first inner step, from the meta-parameters
    with torch.no_grad():
        before = call(policy, expand_params(meta, first.num_tasks), first.obs)
        after = call(policy, batch.valid_params, first.obs)
        kl = mean_kl(before, after, first.mask).item()
        shift = (after.mean - before.mean).abs().mean().item()
    norms = {k: (batch.valid_params[k] - meta[k]).flatten(1).norm(dim=1).mean().item()
             for k in meta}
    returns = " -> ".join(f"{stats[f'return/after_{k}_steps']:.1f}" for k in range(steps + 1))
    std = " ".join(f"{s:.2f}" for s in policy.log_std.exp().detach().tolist())
    step = ", ".join(f"{k} {v:.3f}" for k, v in norms.items())
    return (f"{path} (iteration {state['iteration']}): returns {returns}; "
            f"KL(pre || adapted) {kl:.3f}, |change of the action mean| {shift:.3f}; "
            f"std {std}\n  step norms: {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.checkpoints:
        print(describe(path, args.seed))


if __name__ == "__main__":
    main()
