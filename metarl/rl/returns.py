"""Discounting and advantage estimation on batches of episodes.

Every function takes tensors shaped (T, E, H) (tasks, episodes per task, time;
any leading dims work, time is last) and the episode ``mask``: 1 while the
episode runs, 0 after it terminated early. The mask is a prefix of ones in
every episode; values on padded steps are ignored (they must be finite) and
padded steps get 0 in every output.

There is no bootstrapping beyond the horizon: an episode cut at H is treated
as ended, as in the MAML-RL reference code.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"tensors must have the same (T, E, H) shape, got {shapes}")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def discounted_cumsum(x: Tensor, mask: Tensor, factor: float) -> Tensor:
    """out[..., t] = sum_{k >= 0} factor^k * x[..., t + k] over the valid steps.

    x, mask: (T, E, H). Returns (T, E, H), 0 on padding.
    """
    _check_same_shape(x=x, mask=mask)
    x = x * mask
    running = torch.zeros_like(x[..., 0])
    out = []
    for t in reversed(range(x.shape[-1])):  # the recursion runs backwards in time
        running = (x[..., t] + factor * running) * mask[..., t]
        out.append(running)
    return torch.stack(out[::-1], dim=-1)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Returns-to-go G_t = sum_{k >= 0} gamma^k r_{t+k} within each episode.

    rewards, mask: (T, E, H). Returns (T, E, H), 0 on padding.
    """
    _check_unit_interval("gamma", gamma)
    return discounted_cumsum(rewards, mask, gamma)


def generalized_advantages(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float,
                           lam: float) -> Tensor:
    """GAE(gamma, lambda) of Schulman et al. 2016.

    delta_t = r_t + gamma * V_{t+1} - V_t, with V = 0 after the episode ended and
    beyond the horizon; A_t = sum_{k >= 0} (gamma * lam)^k delta_{t+k}.
    rewards, values, mask: (T, E, H). Returns (T, E, H), 0 on padding.
    lam = 1 gives G_t - V_t; lam = 0 gives the one-step TD residual delta_t.
    """
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    values = values * mask
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = rewards + gamma * next_values - values
    return discounted_cumsum(deltas, mask, gamma * lam)


def masked_mean_per_task(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over the valid steps of each task: (T, E, H) -> (T,).

    A task without valid steps gets 0 (not NaN).
    """
    _check_same_shape(x=x, mask=mask)
    dims = tuple(range(1, x.dim()))
    return (x * mask).sum(dim=dims) / mask.sum(dim=dims).clamp(min=1)


def normalize_per_task(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / (std + eps) with mean and (biased) std over each task's valid steps.

    x, mask: (T, E, H). Returns (T, E, H), 0 on padding.
    """
    mean = masked_mean_per_task(x, mask)
    centred = x - mean.view(-1, *[1] * (x.dim() - 1))
    std = masked_mean_per_task(centred**2, mask).sqrt()
    return centred / (std.view(-1, *[1] * (x.dim() - 1)) + eps) * mask
