"""The TRPO step (Schulman et al. 2015) on a flat vector of meta-parameters.

    g = grad loss                                   (the caller's closure)
    s = F^-1 (-g) by conjugate gradient, scaled so that 0.5 s^T F s = max_kl
    accept the first theta + ratio^k s with a lower loss and KL <= max_kl

In MAML-TRPO the loss re-adapts from its argument, F is the Hessian of the KL
through the adaptation (``rl.fisher``), and every line-search candidate is
judged on re-adapted policies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from metarl.functional import Params, detach_params, flatten, unflatten

LinearMap = Callable[[Tensor], Tensor]  # flat v -> A v


def conjugate_gradient(product: LinearMap, b: Tensor, iters: int = 10,
                       residual_tol: float = 1e-10,
                       preconditioner: LinearMap | None = None) -> tuple[Tensor, Tensor]:
    """Approximate solution x of A x = b for symmetric positive definite A, given
    v -> A v, and its residual r = b - A x; b, x, r are (n,).

    Stops after ``iters`` products or when |r|^2 < residual_tol |b|^2 (relative, so that
    scaling b, e.g. the loss whose gradient it is, scales x alike). preconditioner:
    v -> P^-1 v for a symmetric positive definite P close to A (preconditioned CG).
    CG updates r alongside x, so A x = b - r costs no further product.
    """
    if b.dim() != 1:
        raise ValueError(f"b must be a flat vector, got shape {tuple(b.shape)}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    precondition = preconditioner or (lambda v: v)
    x = torch.zeros_like(b)
    residual = b.clone()
    z = precondition(residual)
    direction = z.clone()
    rz = residual @ z
    tolerance = residual_tol * (b @ b)
    for _ in range(iters):
        if residual @ residual <= tolerance:  # <=: a zero b takes no step
            break
        a_direction = product(direction)
        step = rz / (direction @ a_direction)
        x = x + step * direction
        residual = residual - step * a_direction
        z = precondition(residual)
        new_rz = residual @ z
        direction = z + (new_rz / rz) * direction
        rz = new_rz
    return x, residual


def natural_gradient_step(grad: Tensor, fisher_product: LinearMap, max_kl: float,
                          damping: float, cg_iters: int,
                          preconditioner: LinearMap | None = None) -> Tensor | None:
    """s = (F + damping I)^-1 (-grad) by conjugate gradient, scaled to 0.5 s^T F s = max_kl.

    grad (n,) -> s (n,); None when the curvature along s is not positive and finite
    (zero gradient or a broken Fisher product).
    """
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    damped = lambda v: fisher_product(v) + damping * v
    direction, residual = conjugate_gradient(damped, -grad, cg_iters,
                                             preconditioner=preconditioner)
    # 0.5 s^T F s for the unscaled direction; F s = -grad - residual saves a product.
    curvature = 0.5 * direction @ (-grad - residual)
    if not (torch.isfinite(curvature) and curvature > 0):
        return None
    return direction * torch.sqrt(max_kl / curvature)


def line_search(evaluate_fn: Callable[[Params], tuple[float, float]], like: Params,
                start: Tensor, full_step: Tensor, loss_before: float, max_kl: float,
                backtrack_ratio: float, max_backtracks: int) -> tuple[Params, dict]:
    """The first of start + backtrack_ratio^k full_step, k < max_backtracks, with a finite
    loss below ``loss_before`` and a finite KL <= max_kl; ``start`` if none.

    evaluate_fn: parameters (shaped like ``like``) -> (loss, kl).
    Returns (parameters, info with accepted, backtracks, step_fraction,
    loss_after, improvement, kl).
    """
    info = {"accepted": False, "backtracks": 0, "step_fraction": 0.0,
            "loss_after": loss_before, "improvement": 0.0, "kl": 0.0}
    for k in range(max_backtracks):
        fraction = backtrack_ratio**k
        candidate = unflatten(start + fraction * full_step, like)
        info["backtracks"] = k + 1
        loss, kl = evaluate_fn(candidate)
        improvement = loss_before - loss
        # NaN fails both comparisons.
        if math.isfinite(loss) and improvement > 0 and math.isfinite(kl) and kl <= max_kl:
            info.update(accepted=True, step_fraction=fraction, loss_after=loss,
                        improvement=improvement, kl=kl)
            return candidate, info
    return unflatten(start, like), info


def flat_gradient(loss_fn: Callable[[Params], Tensor], params: Mapping[str, Tensor]
                  ) -> tuple[Tensor, Tensor]:
    """(loss, its gradient flat over ``params`` in order); loss_fn gets views of one leaf."""
    like = detach_params(params)
    flat = flatten(like).clone().requires_grad_()
    loss = loss_fn(unflatten(flat, like))
    (grad,) = torch.autograd.grad(loss, flat)
    return loss.detach(), grad


def check_trpo_arguments(max_kl: float, backtrack_ratio: float, max_backtracks: int) -> None:
    if max_kl <= 0:
        raise ValueError(f"max_kl must be > 0, got {max_kl}")
    if not 0 < backtrack_ratio < 1:
        raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio}")
    if max_backtracks < 1:
        raise ValueError(f"max_backtracks must be >= 1, got {max_backtracks}")


def trpo_step(params: Mapping[str, Tensor], loss_fn: Callable[[Params], Tensor],
              fisher_product: LinearMap, evaluate_fn: Callable[[Params], tuple[float, float]],
              max_kl: float, damping: float = 1e-5, cg_iters: int = 10,
              backtrack_ratio: float = 0.5, max_backtracks: int = 15,
              preconditioner: LinearMap | None = None) -> tuple[Params, dict]:
    """One TRPO update of ``params``; never changes them in place.

    loss_fn: parameters -> scalar loss (differentiable); fisher_product: flat
    v -> F v without damping; evaluate_fn: parameters -> (loss, kl) as floats for
    the line search. Returns (new parameters, ``line_search``'s info plus
    loss_before and expected_improvement, -grad . full step); with no accepted
    candidate the parameters are the old ones.
    """
    check_trpo_arguments(max_kl, backtrack_ratio, max_backtracks)
    like = detach_params(params)
    loss_before, grad = flat_gradient(loss_fn, like)
    full_step = natural_gradient_step(grad, fisher_product, max_kl, damping, cg_iters,
                                      preconditioner)
    if full_step is None:
        return like, {"accepted": False, "backtracks": 0, "loss_before": loss_before.item()}
    new_params, info = line_search(evaluate_fn, like, flatten(like), full_step,
                                   loss_before.item(), max_kl, backtrack_ratio, max_backtracks)
    info.update(loss_before=loss_before.item(), expected_improvement=-(grad @ full_step).item())
    return new_params, info
