"""A K-FAC preconditioner for the conjugate gradient of the TRPO step.

Ten plain CG iterations stop far from the natural gradient on MAML-TRPO's
meta-batches. Per layer, the Fisher of the adapted policies is close to a
Kronecker product (Martens and Grosse 2015),

    F_layer ~ A (x) G,   A = E[a a^T] over the layer's inputs a = [h; 1],
                         G = E[g g^T] over its pre-activation gradients under the Fisher,

pooled over all tasks and steps of the validation batch (weights as
``rl.losses.mean_kl``). G is exact in expectation over actions: each output
direction of the distribution's Fisher M = L L^T is backpropagated once (A
passes for A action dims; for a Categorical head L = diag(sqrt p) - p sqrt(p)^T).
(A (x) G)^-1 v costs two small matrix products per layer; the log-std block is
exactly diagonal (2 per action dim). The Jacobian of the adaptation is left out:
a preconditioner only has to be close, CG still solves with the exact product.

Damping is relative: damping * (mean eigenvalue of A) * (mean eigenvalue of G),
split between the factors (Martens and Grosse's factored Tikhonov damping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from metarl.functional import detach_params, flatten, unflatten
from metarl.rl.mlp_fisher import PolicyFisher


def _output_square_roots(fisher: PolicyFisher) -> list[Tensor]:
    """Columns of L with M = L L^T per step: A tensors (T, N, A) (the head's Fisher)."""
    head, out = fisher.head, fisher.point.output
    if head.gaussian:
        std_inv = head.inv_var.sqrt().expand_as(out)
        return [torch.nn.functional.one_hot(torch.tensor(j), out.shape[-1]).to(out) * std_inv
                for j in range(out.shape[-1])]
    root = head.probs.sqrt()
    eye = torch.eye(out.shape[-1], dtype=out.dtype, device=out.device)
    return [root[..., j:j + 1] * (eye[j] - head.probs) for j in range(out.shape[-1])]


def _weighted_gram(x: Tensor, weights: Tensor) -> Tensor:
    """sum over tasks and steps of w x x^T: x (T, N, d), weights (T, N, 1) -> (d, d)."""
    flat = x.reshape(-1, x.shape[-1])
    return (weights * x).reshape(-1, x.shape[-1]).T @ flat  # w * x: 4x faster than x * w


def kronecker_factors(fisher: PolicyFisher) -> list[tuple[Tensor, Tensor]]:
    """Per layer (A (in+1, in+1), G (out, out)), pooled over tasks and steps."""
    point, weights = fisher.point, fisher.weights  # weights (T, N, 1), summing to 1
    layers = len(point.weights)
    grads_sq = [0.0] * layers
    for seed in _output_square_roots(fisher):
        g = seed
        for i in reversed(range(layers)):
            grads_sq[i] = grads_sq[i] + _weighted_gram(g, weights)
            if i > 0:
                g = torch.bmm(g, point.weights[i]).mul_(point.slopes[i - 1])
    factors = []
    for i, h in enumerate(point.inputs):  # A of [h; 1] without concatenating the ones
        mean = (weights * h).sum(dim=(0, 1))
        a = torch.empty(h.shape[-1] + 1, h.shape[-1] + 1, dtype=h.dtype, device=h.device)
        a[:-1, :-1], a[:-1, -1], a[-1, :-1], a[-1, -1] = (_weighted_gram(h, weights), mean,
                                                          mean, weights.sum())
        factors.append((a, grads_sq[i]))
    return factors


def _damped_inverse(matrix: Tensor, shift: float) -> Tensor:
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return torch.linalg.inv(matrix + shift * eye)


def kfac_preconditioner(fisher: PolicyFisher, meta_params: Mapping[str, Tensor],
                        damping: float, pool: Callable[[Tensor], Tensor] = lambda t: t,
                        ) -> Callable[[Tensor], Tensor]:
    """v (flat, size of meta_params) -> P^-1 v, P the damped K-FAC approximation of
    ``fisher`` (the adapted policies' Fisher on the validation batch), summed over tasks.

    pool: turns this process's factors into the factors of the whole meta-batch
    (with several processes: weight and sum, so every process preconditions alike).
    """
    if damping <= 0:
        raise ValueError(f"kfac_damping must be > 0, got {damping}")
    like, layout = detach_params(meta_params), fisher.point.layout
    inverses = []
    for a, g in kronecker_factors(fisher):
        a, g = pool(a), pool(g)
        mean_a, mean_g = a.diagonal().mean(), g.diagonal().mean()
        pi = (mean_a / mean_g).sqrt()  # splits the damping so both factors get their share
        shift = (damping * mean_a * mean_g).sqrt()
        inverses.append((_damped_inverse(a, (shift * pi).item()),
                         _damped_inverse(g, (shift / pi).item())))
    log_std_scale = 1 / (2 + damping * 2)  # exact Fisher 2 per dim, damped alike

    def precondition(vector: Tensor) -> Tensor:
        v = unflatten(vector, like)
        out = {}
        for (a_inv, g_inv), name_w, name_b in zip(inverses, layout.weights, layout.biases):
            block = torch.cat([v[name_w], v[name_b].unsqueeze(-1)], dim=-1)  # (out, in+1)
            solved = g_inv @ block @ a_inv
            out[name_w], out[name_b] = solved[:, :-1], solved[:, -1]
        if layout.log_std is not None:
            out[layout.log_std] = v[layout.log_std] * log_std_scale
        return flatten([out[k] for k in like])

    return precondition
