"""Linear feature baseline (Duan et al. 2016, rllab), fitted per task, all tasks at once.

Features of a step: clipped obs, obs^2, t, t^2, t^3, 1 with t = step index / 100.
The weights of every task come from one batched ridge-regularised least-squares
solve of the normal equations on the valid steps, with the discounted returns
as targets. As in rllab the ridge coefficient grows x10 for a task whose
system cannot be solved, up to ``max_tries`` times.
"""

from __future__ import annotations

import torch
from torch import Tensor

OBS_CLIP = 10.0  # rllab clips observations before building features
TIME_SCALE = 100.0


def num_features(obs_dim: int) -> int:
    return 2 * obs_dim + 4


def _check_inputs(obs: Tensor, mask: Tensor) -> None:
    if obs.dim() != 4 or obs.shape[:3] != mask.shape:
        raise ValueError(f"obs must be (T, E, H, obs_dim) and mask (T, E, H), "
                         f"got {tuple(obs.shape)} and {tuple(mask.shape)}")


def features(obs: Tensor, mask: Tensor) -> Tensor:
    """Baseline features: (T, E, H, obs_dim) -> (T, E, H, 2 * obs_dim + 4), 0 on padding."""
    _check_inputs(obs, mask)
    valid = mask.unsqueeze(-1).to(obs.dtype)  # (T, E, H, 1); masking first zeroes every power
    o = obs.clamp(-OBS_CLIP, OBS_CLIP) * valid
    step = torch.arange(obs.shape[2], dtype=obs.dtype, device=obs.device) / TIME_SCALE
    t = step.view(1, 1, -1, 1) * valid
    return torch.cat([o, o * o, t, t * t, t * t * t, valid], dim=-1)


def _solve_ridge(x: Tensor, y: Tensor, reg: float, max_tries: int) -> Tensor:
    """Per task argmin |x w - y|^2 + reg |w|^2 via the normal equations.

    x (T, N, F), y (T, N) -> w (T, F). A task whose system fails (not positive
    definite in floating point, or a non-finite solution) retries with 10x reg.
    """
    gram = x.transpose(1, 2) @ x  # (T, F, F)
    rhs = (x.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1)  # (T, F)
    if not (torch.isfinite(gram).all() and torch.isfinite(rhs).all()):
        raise ValueError("obs and returns must be finite")
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    coeff = torch.full((gram.shape[0],), reg, dtype=gram.dtype, device=gram.device)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(gram + coeff.view(-1, 1, 1) * eye)
        weights = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        solved = (info == 0) & torch.isfinite(weights).all(dim=-1)
        if solved.all():
            return weights
        coeff = torch.where(solved, coeff, coeff * 10)  # only the failed tasks get more ridge
    failed = (~solved).nonzero().flatten().tolist()
    raise RuntimeError(f"linear baseline: normal equations of tasks {failed} not solvable "
                       f"even with reg up to {coeff.max().item():.1e}")


def _regression_data(obs: Tensor, returns: Tensor, mask: Tensor,
                     reg: float) -> tuple[Tensor, Tensor]:
    """Checked inputs -> features (T, E, H, F) and targets (T, E, H), float64, 0 on padding."""
    _check_inputs(obs, mask)
    if returns.shape != mask.shape:
        raise ValueError(f"returns must be (T, E, H) like mask, got {tuple(returns.shape)}")
    if reg <= 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    # float64 throughout: the normal equations square the condition number.
    return features(obs.double(), mask.double()), returns.double() * mask


def fit_linear_baseline(obs: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5,
                        max_tries: int = 5) -> Tensor:
    """Ridge least-squares weights of every task: argmin |X w - G|^2 + reg |w|^2.

    obs (T, E, H, obs_dim); returns, mask (T, E, H). Only valid steps count.
    Returns weights (T, F), float64.
    """
    x, y = _regression_data(obs, returns, mask, reg)
    return _solve_ridge(x.flatten(1, 2), y.flatten(1, 2), reg, max_tries)


def predict(weights: Tensor, obs: Tensor, mask: Tensor) -> Tensor:
    """Baseline values: weights (T, F), obs (T, E, H, obs_dim) -> (T, E, H), 0 on padding."""
    feats = features(obs.double(), mask.double())  # float64: the weights can be large
    if weights.shape != (obs.shape[0], feats.shape[-1]):
        raise ValueError(f"weights must be (T, F) = {(obs.shape[0], feats.shape[-1])}, "
                         f"got {tuple(weights.shape)}")
    return torch.einsum("tehf,tf->teh", feats, weights.double()).to(obs.dtype)


def linear_baseline_values(obs: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5,
                           max_tries: int = 5) -> Tensor:
    """Fit on (obs, returns) and predict on the same steps: (T, E, H), 0 on padding."""
    x, y = _regression_data(obs, returns, mask, reg)  # features built once for both
    weights = _solve_ridge(x.flatten(1, 2), y.flatten(1, 2), reg, max_tries)
    return torch.einsum("tehf,tf->teh", x, weights).to(obs.dtype)
