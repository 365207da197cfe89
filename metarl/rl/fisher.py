"""Fisher-vector products for the TRPO step of MAML-RL, without third derivatives.

TRPO needs products with the Hessian of KL(theta) = KL(pi_old || pi_{theta'(theta)})
at the current meta-parameters, where theta' = adapt(theta). By the chain rule

    d2 KL / d theta2 = J^T (d2 KL / d theta'2) J + sum_i (d KL / d theta'_i) d2 theta'_i / d theta2

and the second term vanishes at the current point, where the two policies
coincide and the KL is at its minimum (zero gradient). J is the Jacobian of
the adaptation: per inner step k, theta_{k+1} = theta_k - lr * g_k(theta_k),
so J = prod_k (I - lr * H_k) with H_k the (symmetric) Hessian of step k's
inner loss.

Two products, selected by the config's ``fisher``:

- ``exact`` (``adaptation_fisher_product``): J^T F' J, two Hessian-vector
  products per inner step and one with the KL, all second order, instead of
  differentiating the KL's gradient through the adaptation (third order).
  Same result, checked against that brute force in the tests.
- ``adapted`` (``adapted_fisher_product``): F' alone, the Fisher of the adapted
  policies, as if J = I (exact for first-order MAML). Much cheaper; the line
  search still enforces the exact KL through the adaptation.

Both can use a subsample of the validation episodes (``subsample_episodes``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, distributions, nn

from metarl.functional import call, detach_params, expand_params, flatten, unflatten
from metarl.meta import adapt
from metarl.rl.episodes import Episodes
from metarl.rl.losses import PolicyLoss, mean_kl

FisherProduct = Callable[[Tensor], Tensor]


def _hvp(grads: list[Tensor], points: list[Tensor], vectors: list[Tensor]) -> list[Tensor]:
    """Hessian-vector product from a gradient graph: d(grads . vectors)/d points."""
    return list(torch.autograd.grad(grads, points, grad_outputs=vectors, retain_graph=True))


def subsample_episodes(episodes: Episodes, fraction: float) -> Episodes:
    """The first ceil(fraction * E) episodes of every task (episodes are i.i.d.)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * episodes.episodes_per_task))
    return Episodes(obs=episodes.obs[:, :keep], actions=episodes.actions[:, :keep],
                    rewards=episodes.rewards[:, :keep], mask=episodes.mask[:, :keep])


def _kl_hessian(policy: nn.Module, point: Mapping[str, Tensor], valid: Episodes,
                old_dist: distributions.Distribution):
    """Leaves at the stacked ``point`` and the KL's gradient graph there."""
    names = list(point)
    leaves = [point[k].detach().clone().requires_grad_() for k in names]
    kl = mean_kl(old_dist, call(policy, dict(zip(names, leaves)), valid.obs), valid.mask)
    return leaves, list(torch.autograd.grad(kl, leaves, create_graph=True))


def adapted_fisher_product(policy: nn.Module, meta_params: Mapping[str, Tensor],
                           adapted: Mapping[str, Tensor], valid: Episodes,
                           old_dist: distributions.Distribution) -> FisherProduct:
    """v (flat, size of meta_params) -> F' v, F' the Hessian of the KL w.r.t. the
    stacked ``adapted`` parameters, applied to v in every task and summed over tasks.

    old_dist: the adapted policies on ``valid.obs`` (constants).
    """
    like = {k: v.detach() for k, v in meta_params.items()}
    leaves, kl_grads = _kl_hessian(policy, adapted, valid, old_dist)

    def product(vector: Tensor) -> Tensor:
        u = [t.contiguous() for t in expand_params(unflatten(vector, like),
                                                   valid.num_tasks).values()]
        return flatten([t.sum(dim=0) for t in _hvp(kl_grads, leaves, u)]).detach()

    return product


def adapted_values(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
                   adv: Tensor, loss: PolicyLoss, lr: float) -> dict[str, Tensor]:
    """One inner step (``metarl.meta.adapt``) from constant stacked ``params``, as
    constants (for sampling and for the points of ``adaptation_points``)."""
    params = {k: v.requires_grad_() for k, v in detach_params(params).items()}
    return detach_params(adapt(lambda p, b: loss(policy, p, *b), params, (episodes, adv), lr, 1,
                               first_order=True))


def adaptation_points(policy: nn.Module, meta_params: Mapping[str, Tensor],
                      train: list[tuple[Episodes, Tensor]], inner_loss: PolicyLoss,
                      inner_lr: float, num_tasks: int) -> list[dict[str, Tensor]]:
    """The stacked (T, ...) parameters before every inner step and after the last,
    as constants: len(train) + 1 points, the first the meta-parameters; each step
    is ``adapted_values``, as in sampling."""
    points = [detach_params(expand_params(meta_params, num_tasks))]
    for episodes, adv in train:
        points.append(adapted_values(policy, points[-1], episodes, adv, inner_loss, inner_lr))
    return points


def adaptation_fisher_product(
    policy: nn.Module,
    meta_params: Mapping[str, Tensor],
    train: list[tuple[Episodes, Tensor]],
    inner_loss: PolicyLoss,
    inner_lr: float,
    first_order: bool,
    valid: Episodes,
    old_dist: distributions.Distribution,
    points: list[dict[str, Tensor]] | None = None,
) -> FisherProduct:
    """v (flat, size of meta_params) -> J^T F' J v, the Hessian of the adapted policies' KL.

    train: per inner step, (episodes, advantages), as ``maml_trpo.adapt_policy``.
    old_dist: the adapted policies at the current meta-parameters on ``valid.obs``.
    points: ``adaptation_points`` of the real adaptation (default: of ``train``).
    When ``train`` is a subsample of the episodes the policies were adapted on,
    pass the points of the full adaptation: the inner Hessians are then estimated
    on the subsample but taken where the adaptation really went, and the KL's
    Hessian is taken at ``old_dist``'s parameters, where it is the Fisher matrix.
    """
    names = list(meta_params)
    num_tasks = valid.num_tasks
    if points is None:
        points = adaptation_points(policy, meta_params, train, inner_loss, inner_lr, num_tasks)
    if len(points) != len(train) + 1:
        raise ValueError(f"need {len(train) + 1} adaptation points, got {len(points)}")
    steps = []  # per inner step: (point leaves, their inner-loss gradient graph)
    for (episodes, adv), point in zip(train, points):
        leaves = [point[k].detach().clone().requires_grad_() for k in names]
        loss = inner_loss(policy, dict(zip(names, leaves)), episodes, adv)
        grads = list(torch.autograd.grad(loss, leaves, create_graph=not first_order))
        steps.append((leaves, grads))
    final, kl_grads = _kl_hessian(policy, points[-1], valid, old_dist)
    like = {k: v.detach() for k, v in meta_params.items()}

    def jacobian_step(leaves, grads, vectors):  # (I - lr H_k) u; H_k symmetric
        if first_order:
            return vectors
        return [u - inner_lr * h for u, h in zip(vectors, _hvp(grads, leaves, vectors))]

    def product(vector: Tensor) -> Tensor:
        u = [t.contiguous() for t in expand_params(unflatten(vector, like), num_tasks).values()]
        for leaves, grads in steps:
            u = jacobian_step(leaves, grads, u)
        w = _hvp(kl_grads, final, u)
        for leaves, grads in reversed(steps):
            w = jacobian_step(leaves, grads, w)
        return flatten([t.sum(dim=0) for t in w]).detach()

    return product
