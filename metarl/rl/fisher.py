"""Fisher-vector products for the TRPO step of MAML-RL, from one factory.

TRPO needs products with the Hessian of KL(theta) = KL(pi_old || pi_{theta'(theta)})
at the current meta-parameters, where theta' = adapt(theta). By the chain rule

    d2 KL / d theta2 = J^T (d2 KL / d theta'2) J + sum_i (d KL / d theta'_i) d2 theta'_i / d theta2

and the second term vanishes at the current point, where the two policies
coincide and the KL is at its minimum (zero gradient). J is the Jacobian of
the adaptation: per inner step k, theta_{k+1} = theta_k - lr * g_k(theta_k),
so J = prod_k (I - lr * H_k) with H_k the (symmetric) Hessian of step k's
inner loss.

``make_fisher_product`` builds the config's product:

- ``fisher: exact``: J^T F' J, two inner Hessian-vector products per step and one
  Fisher product, all second order. ``fisher_backend`` says how: ``structured``
  (``rl.mlp_fisher``, written out for metarl's MLP policies, ~2x faster) or
  ``autograd`` (double backward, any model); ``auto`` takes the first where the
  policy allows it.
- ``fisher: adapted``: F' alone, the Fisher of the adapted policies, as if J = I
  (exact for first-order MAML); the line search still enforces the exact KL.
- ``fisher: autograd``: the third-order reference, differentiating the KL's
  gradient through the adaptation (``third_order_product``).

Exact and adapted can use a share of the validation episodes (``fisher_fraction``),
and the structured products can run in bfloat16 (``fisher_dtype``): each slice's
matmuls then take 2-3x less time on CPUs with bfloat16 units, at a relative error of
about 2e-3 per product; only conjugate gradient sees them, and with them the step's
length (from CG's residual). ``rl.maml_trpo`` keeps the gradient in float32, and the
line search checks the exact KL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, distributions, nn

from metarl.functional import Params, call, detach_params, expand_params, flatten, unflatten
from metarl.rl.adaptation import (
    RATE_PREFIX,
    TrainBatches,
    inner_iterates,
    inner_names_of,
    split_rates,
)
from metarl.rl.episode_slices import (
    SlicedProduct,
    cast,
    cast_episodes,
    cast_params,
    take_tasks,
)
from metarl.rl.episodes import Episodes
from metarl.rl.losses import PolicyLoss, inner_loss, mean_kl
from metarl.rl.mlp_fisher import (
    Buffers,
    InnerHessian,
    MLPLayout,
    PolicyFisher,
    mlp_layout,
    valid_steps,
)

FisherProduct = Callable[[Tensor], Tensor]  # flat v (size of the meta-parameters) -> F v
FISHER_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # config key fisher_dtype


def subsample_episodes(episodes: Episodes, fraction: float) -> Episodes:
    """The first ceil(fraction * E) episodes of every task (episodes are i.i.d.)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * episodes.episodes_per_task))
    return Episodes(obs=episodes.obs[:, :keep], actions=episodes.actions[:, :keep],
                    rewards=episodes.rewards[:, :keep], mask=episodes.mask[:, :keep])


def structured_layout(policy: nn.Module, config) -> MLPLayout | None:
    """The policy's layout when the config's products and gradients are to be structured
    (``fisher_backend``), else None; a clear error if it asks for what cannot be."""
    layout = mlp_layout(policy)
    if config.fisher_backend == "structured" and layout is None:
        raise ValueError(f"fisher_backend: structured supports metarl's MLP policies, not "
                         f"{type(policy).__name__}; use fisher_backend: autograd")
    return None if config.fisher_backend == "autograd" else layout


def make_fisher_product(policy: nn.Module, meta_params: Mapping[str, Tensor],
                        train: TrainBatches, iterates: list[Params], valid: Episodes,
                        config, kl_through_adaptation: Callable[[Params], Tensor] | None,
                        curvature: StructuredCurvature | None = None) -> FisherProduct:
    """The product the config asks for (``fisher``, ``fisher_backend``,
    ``fisher_fraction``), at the ``inner_iterates`` of the real adaptation on ``train``.

    kl_through_adaptation: meta-parameters -> KL of the re-adapted policies from
    the sampling ones (used by ``fisher: autograd`` only).
    curvature: a ``StructuredCurvature`` already built on all of ``train`` and
    ``valid``, reused when the config's product is its product.
    """
    if config.fisher == "autograd":
        return third_order_product(kl_through_adaptation, meta_params)
    dtype = FISHER_DTYPES[config.fisher_dtype]
    if (curvature is not None and config.fisher == "exact" and config.fisher_fraction == 1
            and dtype is None):
        return curvature.product
    fraction = config.fisher_fraction
    valid = subsample_episodes(valid, fraction)
    # The adaptation's Jacobian is estimated on the same share of training episodes,
    # at the iterates the adaptation on all episodes went through: the KL's Hessian
    # is the Fisher matrix only at the policies that sampled ``valid``.
    train = [(part, adv[:, :part.episodes_per_task])
             for part, adv in ((subsample_episodes(e, fraction), adv) for e, adv in train)]
    if config.fisher == "adapted":  # no adaptation Jacobian: the Fisher at the last iterate
        train, iterates = [], iterates[-1:]
    layout = structured_layout(policy, config)
    if layout is not None:
        return StructuredCurvature(layout, meta_params, train, iterates, valid,
                                   config.inner_objective, config.inner_lr,
                                   config.first_order, policy,
                                   inner_names_of(policy, config), dtype).product
    with torch.no_grad():
        old_dist = call(policy, iterates[-1], valid.obs)
    return autograd_product(policy, meta_params, train, inner_loss(config.inner_objective),
                            config.inner_lr, config.first_order, valid, old_dist, iterates,
                            inner_names_of(policy, config))


def step_rates(meta_params: Mapping[str, Tensor], inner_lr: float, inner_names=None):
    """(policy parameter names, the rate R of each in theta' = theta - R g, learned?):
    Meta-SGD's rates (constants here), else lr on ``inner_names`` (ANIL) or on all."""
    policy_params, rate = split_rates(meta_params, inner_lr)
    names = list(policy_params)
    if isinstance(rate, Mapping):
        return names, [rate[k].detach() for k in names], True
    return names, [inner_lr if inner_names is None or k in inner_names else 0.0
                   for k in names], False


def inner_gradients(policy: nn.Module, train: TrainBatches, iterates: list[Params],
                    loss: PolicyLoss) -> list[list[Tensor]]:
    """Per inner step, the inner loss's gradient at its iterate (constants, stacked)."""
    out = []
    for (episodes, adv), point in zip(train, iterates):
        leaves = [v.detach().clone().requires_grad_() for v in point.values()]
        value = loss(policy, dict(zip(point, leaves)), episodes, adv)
        out.append([g.detach() for g in torch.autograd.grad(value, leaves)])
    return out


class AdaptationJacobian:
    """J = J_K ... J_1, the Jacobian of the adaptation, and its transpose.

    Per inner step theta_{k+1} = theta_k - R g_k(theta_k), so
    J_k (u, a) = (u - R H_k u - g_k a, a) and J_k^T (w, b) = (w - H_k R w, b - sum over
    tasks g_k w): R is lr (MAML), lr on the adapted names only (ANIL), or Meta-SGD's
    rates (elementwise), whose directions a enter through the step's gradient g_k.

    names, rates, learned: ``step_rates``. hessians: per step, u -> H_k u on stacked
    (T, ...) dicts by name, or None where first order drops the term. gradients: per
    step, g_k by name (Meta-SGD only, else empty). No steps: J = I.
    """

    def __init__(self, like: Params, names: list[str], rates: list, learned: bool,
                 hessians: list, gradients: list[Params], num_tasks: int):
        self.like, self.names, self.rates, self.learned = like, names, rates, learned
        self.hessians, self.gradients, self.num_tasks = hessians, gradients, num_tasks

    def apply(self, vector: Tensor) -> Params:
        """J v: flat like the meta-parameters -> stacked (T, ...) policy directions."""
        v = unflatten(vector, self.like)
        u = {n: t.contiguous() for n, t in
             expand_params({n: v[n] for n in self.names}, self.num_tasks).items()}
        a = {n: v[RATE_PREFIX + n] for n in self.names} if self.learned else {}
        for k, hessian in enumerate(self.hessians):
            if hessian is not None:
                hu = hessian(u)
                u = {n: u[n] - r * hu[n] for n, r in zip(self.names, self.rates)}
            if self.learned:
                u = {n: u[n] - self.gradients[k][n] * a[n] for n in self.names}
        return u

    def transpose(self, w: Params) -> Tensor:
        """J^T w, summed over tasks: stacked (T, ...) -> flat like the meta-parameters."""
        b = {n: torch.zeros_like(w[n][0]) for n in self.names} if self.learned else {}
        for k in reversed(range(len(self.hessians))):
            if self.learned:
                b = {n: b[n] - (self.gradients[k][n] * w[n]).sum(dim=0) for n in self.names}
            if self.hessians[k] is not None:
                h = self.hessians[k]({n: r * w[n] for n, r in zip(self.names, self.rates)})
                w = {n: w[n] - h[n] for n in self.names}
        return flatten([w[n].sum(dim=0) for n in self.names] + [b[n] for n in b])


class StructuredCurvature:
    """The adaptation's Jacobian J and the adapted policies' Fisher F' for metarl's MLP
    policies (``rl.mlp_fisher``), at the ``inner_iterates`` of the real adaptation,
    each product summed over slices of a few tasks' whole episodes (``rl.episode_slices``).

    Built once per meta-iteration; ``product`` is J^T F' J (J = I when
    ``first_order`` or ``train`` is empty), ``meta_gradient`` J^T of the surrogate's
    gradient at the adapted policies, both flat like the meta-parameters. J is an
    ``AdaptationJacobian`` (MAML, ANIL, and Meta-SGD, for whose inner gradients g_k
    ``policy`` is needed).
    """

    def __init__(self, layout: MLPLayout, meta_params: Mapping[str, Tensor],
                 train: TrainBatches, iterates: list[Params], valid: Episodes,
                 inner_objective: str, inner_lr: float, first_order: bool,
                 policy: nn.Module | None = None, inner_names=None,
                 dtype: torch.dtype | None = None):
        buffers = Buffers()
        names, rates, learned = step_rates(meta_params, inner_lr, inner_names)
        # dtype: the slices' products run in it (FISHER_DTYPES); J's steps and sums do not.
        count = cast(valid_steps(valid.mask), dtype)
        points = [cast_params(p, dtype) for p in iterates]
        self.fisher = SlicedProduct(cast_episodes(valid, dtype), lambda part, where: PolicyFisher(
            layout, take_tasks(points[-1], where.tasks), part, buffers, count[where.tasks],
            valid.num_tasks), dtype=dtype)
        # J = I for first-order MAML and ANIL; Meta-SGD's g_k a terms stay in first order.
        steps = train if learned or not first_order else []
        hessians = [None if first_order else self._inner_hessian(
                        layout, point, cast_episodes(episodes, dtype), cast(adv, dtype),
                        inner_objective, buffers, dtype)
                    for (episodes, adv), point in zip(steps, points)]
        gradients = ([dict(zip(names, g)) for g in inner_gradients(
            policy, steps, iterates, inner_loss(inner_objective))] if learned else [])
        self.jacobian = AdaptationJacobian(detach_params(meta_params), names, rates, learned,
                                           hessians, gradients, valid.num_tasks)

    @staticmethod
    def _inner_hessian(layout, point, episodes, advantages, objective, buffers, dtype=None):
        count = valid_steps(episodes.mask)
        return SlicedProduct(episodes, lambda part, where: InnerHessian(
            layout, take_tasks(point, where.tasks), part,
            advantages[where.tasks, where.episodes], objective, buffers, count[where.tasks]),
            dtype=dtype)

    def product(self, vector: Tensor) -> Tensor:
        return self.jacobian.transpose(self.fisher(self.jacobian.apply(vector)))

    def meta_gradient(self, advantages: Tensor) -> Tensor:
        """Gradient of ``rl.losses.surrogate_loss`` through the adaptation, at the
        meta-parameters whose adapted policies sampled ``valid`` (advantages (T, E, H))."""
        return self.jacobian.transpose(self.fisher.surrogate_gradient(advantages))


def _hvp(grads: list[Tensor], points: list[Tensor], vectors: list[Tensor]) -> list[Tensor]:
    """Hessian-vector product from a gradient graph: d(grads . vectors)/d points."""
    return list(torch.autograd.grad(grads, points, grad_outputs=vectors, retain_graph=True))


def _dict_hvp(names: list[str], grads: list[Tensor], points: list[Tensor]):
    """u -> H u on dicts by name, H the Hessian whose gradient graph is ``grads``."""
    return lambda u: dict(zip(names, _hvp(grads, points, [u[n] for n in names])))


def _kl_hessian(policy: nn.Module, point: Mapping[str, Tensor], valid: Episodes,
                old_dist: distributions.Distribution):
    """Leaves at the stacked ``point`` and the KL's gradient graph there."""
    names = list(point)
    leaves = [point[k].detach().clone().requires_grad_() for k in names]
    kl = mean_kl(old_dist, call(policy, dict(zip(names, leaves)), valid.obs), valid.mask)
    return leaves, list(torch.autograd.grad(kl, leaves, create_graph=True))


def autograd_product(
    policy: nn.Module,
    meta_params: Mapping[str, Tensor],
    train: TrainBatches,
    inner_loss: PolicyLoss,
    inner_lr: float,
    first_order: bool,
    valid: Episodes,
    old_dist: distributions.Distribution,
    iterates: list[dict[str, Tensor]] | None = None,
    inner_names=None,
) -> FisherProduct:
    """J^T F' J by double backward, for any model (J = I when ``first_order``).

    train: per inner step, (episodes, advantages).
    old_dist: the adapted policies at the current meta-parameters on ``valid.obs``.
    iterates: ``inner_iterates`` of the real adaptation (default: of ``train``).
    When ``train`` is a subsample of the episodes the policies were adapted on,
    pass the iterates of the full adaptation: the inner Hessians are then estimated
    on the subsample but taken where the adaptation really went, and the KL's
    Hessian is taken at ``old_dist``'s parameters, where it is the Fisher matrix.
    J is an ``AdaptationJacobian`` (MAML, ANIL, Meta-SGD) with double-backward H_k.
    """
    names, rates, learned = step_rates(meta_params, inner_lr, inner_names)
    if iterates is None:
        iterates = inner_iterates(policy, meta_params, train, inner_loss, inner_lr,
                                  valid.num_tasks, inner_names)
    if len(iterates) != len(train) + 1:
        raise ValueError(f"need {len(train) + 1} adaptation iterates, got {len(iterates)}")
    # Per inner step, the inner loss's gradient graph at its iterate: its double backward
    # is H_k (dropped in first order); Meta-SGD's g_k a terms stay.
    hessians, gradients = [], []
    for (episodes, adv), point in zip([] if first_order and not learned else train, iterates):
        leaves = [point[k].detach().clone().requires_grad_() for k in names]
        loss = inner_loss(policy, dict(zip(names, leaves)), episodes, adv)
        grads = list(torch.autograd.grad(loss, leaves, create_graph=not first_order))
        hessians.append(None if first_order else _dict_hvp(names, grads, leaves))
        gradients.append({n: g.detach() for n, g in zip(names, grads)})
    final, kl_grads = _kl_hessian(policy, iterates[-1], valid, old_dist)
    jacobian = AdaptationJacobian(detach_params(meta_params), names, rates, learned,
                                  hessians, gradients if learned else [], valid.num_tasks)
    fisher = _dict_hvp(names, kl_grads, final)

    def product(vector: Tensor) -> Tensor:
        return jacobian.transpose(fisher(jacobian.apply(vector))).detach()

    return product


def third_order_product(kl_fn: Callable[[Params], Tensor],
                        meta_params: Mapping[str, Tensor]) -> FisherProduct:
    """v -> H v, H the Hessian of ``kl_fn`` (meta-parameters -> KL through the
    adaptation) at ``meta_params``, by differentiating its gradient: third order
    through the inner step, for any model. The slow reference."""
    like = detach_params(meta_params)
    flat = flatten(like).clone().requires_grad_()
    (grad,) = torch.autograd.grad(kl_fn(unflatten(flat, like)), flat, create_graph=True)

    def product(vector: Tensor) -> Tensor:
        (hvp,) = torch.autograd.grad(grad @ vector.detach(), flat, retain_graph=True)
        return hvp.detach()

    return product
