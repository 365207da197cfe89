"""The TRPO step (Schulman et al. 2015) on a flat vector of meta-parameters.

The caller supplies closures ``loss_fn(params)`` and ``kl_fn(params)`` that map
a parameter dict to a scalar. In MAML-TRPO they redo the inner adaptation from
``params``, so the Fisher matrix is the Hessian of the KL *through* the
adaptation, and every line-search candidate is judged on re-adapted policies.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from metarl.functional import Params, flatten, unflatten

ParamsFn = Callable[[Params], Tensor]


def conjugate_gradient(fvp_fn: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> Tensor:
    """Approximate solution x of A x = b for symmetric positive definite A, given v -> A v.

    b (n,) -> x (n,). Stops after ``iters`` products or when |r|^2 < residual_tol.
    """
    return conjugate_gradient_with_residual(fvp_fn, b, iters, residual_tol)[0]


def conjugate_gradient_with_residual(fvp_fn: Callable[[Tensor], Tensor], b: Tensor,
                                     iters: int = 10, residual_tol: float = 1e-10
                                     ) -> tuple[Tensor, Tensor]:
    """``conjugate_gradient``'s x and its residual r = b - A x, both (n,).

    CG updates r alongside x, so A x = b - r costs no further product.
    """
    if b.dim() != 1:
        raise ValueError(f"b must be a flat vector, got shape {tuple(b.shape)}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual @ residual
    for _ in range(iters):
        if residual_sq < residual_tol:
            break
        a_direction = fvp_fn(direction)
        step = residual_sq / (direction @ a_direction)
        x = x + step * direction
        residual = residual - step * a_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x, residual


def fisher_vector_product(kl_fn: Callable[[], Tensor], params: Sequence[Tensor],
                          damping: float) -> Callable[[Tensor], Tensor]:
    """v -> (H + damping I) v with H the Hessian of ``kl_fn()`` w.r.t. ``params``.

    At the point where the two distributions coincide, the Hessian of the KL is
    the Fisher information matrix. v is flat over all ``params`` (in order).
    The KL and its gradient are computed once; each product is one backward pass.
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    grads = torch.autograd.grad(kl_fn(), params, create_graph=True)
    flat_grad = flatten(grads)

    def product(vector: Tensor) -> Tensor:
        hvp = torch.autograd.grad(flat_grad @ vector.detach(), params, retain_graph=True)
        return flatten(hvp).detach() + damping * vector

    return product


def trpo_step(params: Mapping[str, Tensor], loss_fn: ParamsFn, kl_fn: ParamsFn, max_kl: float,
              damping: float = 1e-5, cg_iters: int = 10, backtrack_ratio: float = 0.5,
              max_backtracks: int = 15,
              fvp_fn: Callable[[Tensor], Tensor] | None = None,
              evaluate_fn: Callable[[Params], tuple[float, float]] | None = None,
              all_reduce: Callable[[Tensor], Tensor] | None = None,
              ) -> tuple[Params, dict]:
    """One TRPO update of ``params``; never changes them in place.

    Direction s = F^-1 (-grad loss) by conjugate gradient, scaled so that
    0.5 s^T F s = max_kl; backtracking line search over step fractions
    backtrack_ratio^k, k < max_backtracks, accepting the first candidate with a
    finite loss lower than before and mean KL <= max_kl.

    loss_fn, kl_fn: parameter dict -> scalar; kl_fn(params) must be the KL from
    the policy at ``params`` (as constants) to the policy at its argument.
    Both get parameters that require grad (views of one flat leaf), so they may
    differentiate through an inner adaptation; call them with grad enabled.
    Returns (new parameters (detached, shaped like ``params``), info) where info
    has ``accepted``, ``backtracks`` (candidates tried), ``step_fraction``,
    ``loss_before``, ``loss_after``, ``improvement``, ``kl`` (of the accepted
    step) and ``expected_improvement`` (-grad . full step, the linear prediction).
    If no candidate is accepted the returned parameters equal the old ones.
    fvp_fn: optional v -> F v (without damping) on flat vectors, replacing the
    double backward through ``kl_fn`` (e.g. a cheaper exact product).
    evaluate_fn: optional params -> (loss, kl) as floats for the line search,
    e.g. one evaluation without any graph; default calls ``loss_fn``, ``kl_fn``.
    all_reduce: sums a tensor over processes when the closures return this
    process's share of a sharded meta-batch (``metarl.distributed``): the
    gradient, Fisher products and line-search values are summed, so every
    process computes the same step. Default: one process.
    info also has the seconds spent: ``time/gradient``, ``time/cg``
    (the conjugate gradient and the step scaling) and ``time/line_search``.
    """
    if max_kl <= 0:
        raise ValueError(f"max_kl must be > 0, got {max_kl}")
    if not 0 < backtrack_ratio < 1:
        raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio}")
    if max_backtracks < 1:
        raise ValueError(f"max_backtracks must be >= 1, got {max_backtracks}")
    like = {k: v.detach() for k, v in params.items()}
    start = flatten(like).clone()
    if evaluate_fn is None:
        evaluate_fn = lambda p: _loss_and_kl(loss_fn, kl_fn, p)
    reduce = all_reduce or (lambda t: t)

    # Differentiating w.r.t. one flat leaf gives flat gradients and Fisher products.
    tick = time.perf_counter()
    flat = start.clone().requires_grad_()
    loss_before = loss_fn(unflatten(flat, like))
    (grad,) = torch.autograd.grad(loss_before, flat)
    grad, loss_before = reduce(grad), reduce(loss_before.detach())
    timing = {"time/gradient": time.perf_counter() - tick}
    tick = time.perf_counter()
    if fvp_fn is None:
        fvp_fn = fisher_vector_product(lambda: kl_fn(unflatten(flat, like)), [flat], 0.0)
    fvp = lambda v: reduce(fvp_fn(v)) + damping * v
    direction, residual = conjugate_gradient_with_residual(fvp, -grad, iters=cg_iters)
    # 0.5 s^T F s for the unscaled direction; F s = -grad - residual saves a product.
    curvature = 0.5 * direction @ (-grad - residual)
    timing["time/cg"] = time.perf_counter() - tick
    tick = time.perf_counter()

    info = {"accepted": False, "backtracks": 0, "step_fraction": 0.0,
            "loss_before": loss_before.item(), "loss_after": loss_before.item(),
            "improvement": 0.0, "expected_improvement": 0.0, "kl": 0.0, **timing,
            "time/line_search": 0.0}
    if not (torch.isfinite(curvature) and curvature > 0):  # zero gradient or broken Fisher
        return unflatten(start, like), info
    full_step = direction * torch.sqrt(max_kl / curvature)
    info["expected_improvement"] = -(grad @ full_step).item()

    new_params = unflatten(start, like)
    for k in range(max_backtracks):
        fraction = backtrack_ratio**k
        candidate = unflatten(start + fraction * full_step, like)
        info["backtracks"] = k + 1
        loss, kl = reduce(torch.tensor(evaluate_fn(candidate), dtype=torch.float64)).tolist()
        improvement = info["loss_before"] - loss
        # NaN fails both comparisons.
        if math.isfinite(loss) and improvement > 0 and math.isfinite(kl) and kl <= max_kl:
            info.update(accepted=True, step_fraction=fraction, loss_after=loss,
                        improvement=improvement, kl=kl)
            new_params = candidate
            break
    info["time/line_search"] = time.perf_counter() - tick
    return new_params, info


def _loss_and_kl(loss_fn: ParamsFn, kl_fn: ParamsFn, params: Params) -> tuple[float, float]:
    """(loss, kl) of a line-search candidate, given as leaves that require grad
    because the closures may differentiate through an inner adaptation."""
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    return loss_fn(params).item(), kl_fn(params).item()
