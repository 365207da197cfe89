"""How good is a TRPO step whose conjugate gradient runs on bfloat16 Fisher products?

On real meta-batches sampled from a trained run's checkpoint, computes the TRPO step
(conjugate gradient on the structured products, scaled to max_kl by its own CG
residual, as in training) with ``fisher_dtype: float32`` and ``bfloat16``, and prints the
cosine between the two steps, the bfloat16 step's surrogate improvement relative to
the float32 step's, and each full step's KL (means over ``--batches`` meta-batches).
A step that kept its direction and length scores cosine 1 and improvement 1.

    RUN=experiments/results/halfcheetah-dir/maml-all-episodes-seed0
    python experiments/fisher_precision.py $RUN/checkpoint.pt --batches 3
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from metarl.functional import call, detach_params, flatten, params_of, unflatten
from metarl.rl.adaptation import inner_iterates
from metarl.rl.families import checkpoint_meta_batches
from metarl.rl.fisher import StructuredCurvature, make_fisher_product, structured_layout
from metarl.rl.losses import inner_loss, mean_kl, surrogate
from metarl.rl.trpo import natural_gradient_step


def compare_on_batch(policy, config, batch) -> dict[str, tuple[float, float, float]]:
    """Per dtype: (cosine to the float32 step, surrogate improvement, KL of the full step)."""
    meta = detach_params(params_of(policy))
    tasks, loss = batch.valid.num_tasks, inner_loss(config.inner_objective)
    layout = structured_layout(policy, config)
    if layout is None:
        raise SystemExit(f"{config.env}: the policy has no structured products to compare")
    curvature = StructuredCurvature(layout, meta, batch.train, batch.iterates, batch.valid,
                                    config.inner_objective, config.inner_lr,
                                    config.first_order, policy)
    grad = curvature.meta_gradient(batch.valid_advantages)
    old = call(policy, batch.valid_params, batch.valid.obs)
    with torch.no_grad():
        before = surrogate(batch.valid_log_probs, batch.valid_log_probs,
                           batch.valid_advantages, batch.valid.mask).item()

    def improvement(step):
        candidate = unflatten(flatten(meta) + step, meta)
        adapted = inner_iterates(policy, candidate, batch.train, loss, config.inner_lr, tasks)[-1]
        with torch.no_grad():
            dist = call(policy, adapted, batch.valid.obs)
            after = surrogate(dist.log_prob(batch.valid.actions), batch.valid_log_probs,
                              batch.valid_advantages, batch.valid.mask)
            return before - after.item(), mean_kl(old, dist, batch.valid.mask).item()

    steps = {}
    for dtype in ["float32", "bfloat16"]:
        product = make_fisher_product(policy, meta, batch.train, batch.iterates, batch.valid,
                                      dataclasses.replace(config, fisher_dtype=dtype), None,
                                      curvature)
        steps[dtype] = natural_gradient_step(grad, product, config.max_kl, config.cg_damping,
                                             config.cg_iters)
    return {dtype: (torch.nn.functional.cosine_similarity(step, steps["float32"], dim=0).item(),
                    *improvement(step)) for dtype, step in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    state, config, policy, batches = checkpoint_meta_batches(args.checkpoint, args.batches)
    rows: dict[str, list] = {}
    for batch in batches:
        for name, value in compare_on_batch(policy, config, batch).items():
            rows.setdefault(name, []).append(value)
    reference = np.array([imp for _, imp, _ in rows["float32"]])
    print(f"{config.env}, iteration {state['iteration']}, {args.batches} meta-batches")
    print(f"| products in | cosine to the float32 step | surrogate improvement (x float32) "
          f"| KL of the full step (max_kl {config.max_kl:g}) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        values = np.array(values)
        ratio = np.mean(values[:, 1] / reference)
        print(f"| {name} | {values[:, 0].mean():.4f} (min {values[:, 0].min():.4f}) | "
              f"{ratio:.3f} | {values[:, 2].mean():.4f} |")


if __name__ == "__main__":
    main()
