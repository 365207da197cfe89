"""How good is a TRPO step whose exact Fisher products use a share of the episodes?

On real meta-batches sampled from a trained run's checkpoint, computes the TRPO
step (conjugate gradient, scaled to max_kl) with exact products on all
validation episodes and on ``--fractions`` of them, and prints, per fraction,
the cosine between its step and the all-episode step and the surrogate
improvement of its full step relative to the all-episode step's (means over
``--batches`` meta-batches). "subsample points" is the product before the fix
of session 4: the inner Hessians and the KL's Hessian taken where an adaptation
on the subsample alone would have gone, not where the policies were adapted.

    RUN=experiments/results/compare-navigation/maml-seed0
    python experiments/fisher_subsample.py $RUN/checkpoint.pt --fractions 0.1 0.25 --batches 5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from metarl.functional import call, detach_params, flatten, params_of, unflatten
from metarl.rl.adaptation import adapt_through, inner_iterates
from metarl.rl.families import checkpoint_meta_batches
from metarl.rl.fisher import autograd_product, subsample_episodes
from metarl.rl.losses import inner_loss, mean_kl, surrogate, surrogate_loss
from metarl.rl.trpo import conjugate_gradient


def trpo_direction(product, grad: torch.Tensor, config) -> torch.Tensor:
    """The full TRPO step for Fisher product ``product``: (n,) like ``grad``."""
    fvp = lambda v: product(v) + config.cg_damping * v
    x, _ = conjugate_gradient(fvp, -grad, iters=config.cg_iters)
    return x * torch.sqrt(config.max_kl / (0.5 * x @ fvp(x)))


def compare_on_batch(policy, config, batch, fractions: list[float]) -> dict[str, tuple]:
    """Per variant: (cosine to the all-episode step, surrogate improvement, KL of its full step)."""
    meta = detach_params(params_of(policy))
    tasks, loss = batch.valid.num_tasks, inner_loss(config.inner_objective)
    flat = flatten(meta).clone().requires_grad_()
    before = surrogate_loss(policy, adapt_through(policy, unflatten(flat, meta), batch.train,
                                                  loss, config.inner_lr, config.first_order,
                                                  tasks),
                            batch.valid, batch.valid_advantages, batch.valid_log_probs)
    (grad,) = torch.autograd.grad(before, flat)
    old = call(policy, batch.valid_params, batch.valid.obs)

    def improvement(step):
        candidate = unflatten(flat.detach() + step, meta)
        adapted = inner_iterates(policy, candidate, batch.train, loss, config.inner_lr, tasks)[-1]
        with torch.no_grad():
            dist = call(policy, adapted, batch.valid.obs)
            after = surrogate(dist.log_prob(batch.valid.actions), batch.valid_log_probs,
                              batch.valid_advantages, batch.valid.mask)
            return before.item() - after.item(), mean_kl(old, dist, batch.valid.mask).item()

    args = (loss, config.inner_lr, config.first_order)
    reference = trpo_direction(autograd_product(policy, meta, batch.train, *args,
                                                batch.valid, old), grad, config)
    points = inner_iterates(policy, meta, batch.train, loss, config.inner_lr, tasks)
    results = {"all episodes": (1.0, *improvement(reference))}
    for fraction in fractions:
        valid = subsample_episodes(batch.valid, fraction)
        keep = valid.episodes_per_task
        train = [(subsample_episodes(e, fraction), a[:, :keep]) for e, a in batch.train]
        sub_old = call(policy, batch.valid_params, valid.obs)
        for name, at in (("real points", points), ("subsample points", None)):
            step = trpo_direction(autograd_product(policy, meta, train, *args, valid,
                                                   sub_old, at), grad, config)
            cosine = torch.nn.functional.cosine_similarity(step, reference, dim=0).item()
            results[f"{fraction:g}, {name}"] = (cosine, *improvement(step))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state, config, policy, batches = checkpoint_meta_batches(args.checkpoint, args.batches)
    rows: dict[str, list] = {}
    for batch in batches:
        for name, value in compare_on_batch(policy, config, batch, args.fractions).items():
            rows.setdefault(name, []).append(value)
    reference = np.mean([imp for _, imp, _ in rows["all episodes"]])
    print(f"{config.env}, iteration {state['iteration']}, {args.batches} meta-batches")
    print(f"| exact product on | cosine to all-episode step | surrogate improvement (x all) "
          f"| KL of the full step (max_kl {config.max_kl:g}) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        cosine, imp, kl = np.mean(values, axis=0)
        print(f"| {name} | {cosine:.3f} | {imp / reference:.2f} | {kl:.4f} |")


if __name__ == "__main__":
    main()
