"""Policy-gradient objectives for the inner and the outer loop of MAML-RL.

All losses are functions of ``(policy, params, episodes, advantages)``:
``params`` are stacked per-task parameters (leading dim T) or shared ones,
``episodes`` hold (T, E, H) tensors, ``advantages`` is (T, E, H) (normalise it
per task beforehand if wanted, ``returns.normalize_per_task``). Steps with
``mask == 0`` never count; each task's loss is a mean over its valid steps.

Inner losses (``reinforce_loss``, ``lvc_loss``, ``dice_loss``) *sum* the T
per-task losses, so ``adapt`` on stacked parameters takes T independent steps.
They have the same gradient, the policy gradient mean(grad log pi * A), but
different Hessians, which MAML's meta-gradient differentiates through:

- REINFORCE: E[hessian] misses E[A grad log pi grad log pi^T], the curvature of
  the sampling distribution (MAML's original, biased estimator).
- LVC (ProMP): adds that term for each step's own action, not the products
  across steps of one episode: unbiased in a stateless bandit, biased in an MDP.
- DiCE: the full causal products: unbiased derivatives of every order when A
  is the return-to-go minus a state baseline and gamma = 1.

An unbiased Hessian still does not make the meta-gradient of
E_{tau ~ pi_theta}[J(theta'(tau))] exact: the score term
E[grad log p(tau) J(theta'(tau))] comes through the curvature only to first
order in the inner rate. Exact is a REINFORCE inner step plus
``magic_box(log p(tau))`` on the outer objective (E-MAML). The tests check all
of this by exact enumeration.

The outer (TRPO) pieces, ``surrogate_loss`` and ``mean_kl``, *average* over tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, distributions, nn

from metarl.functional import call
from metarl.rl.episodes import Episodes
from metarl.rl.returns import masked_mean_per_task

PolicyLoss = Callable[[nn.Module, Mapping[str, Tensor], Episodes, Tensor], Tensor]


def _check_advantages(episodes: Episodes, advantages: Tensor) -> None:
    if advantages.shape != episodes.mask.shape:
        raise ValueError(f"advantages must be (T, E, H) = {tuple(episodes.mask.shape)}, "
                         f"got {tuple(advantages.shape)}")


def log_probs(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes) -> Tensor:
    """log pi(a_t | s_t) of every step: (T, E, H) (summed over action dims)."""
    return call(policy, params, episodes.obs).log_prob(episodes.actions)


def magic_box(x: Tensor) -> Tensor:
    """DiCE's magic box exp(x - stop_grad(x)): value 1, d/dx magic_box(x) = magic_box(x)."""
    return torch.exp(x - x.detach())


def reinforce_loss(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
                   advantages: Tensor) -> Tensor:
    """-mean(log pi * A) over each task's valid steps, summed over tasks. Scalar."""
    _check_advantages(episodes, advantages)
    logp = log_probs(policy, params, episodes)
    return -masked_mean_per_task(logp * advantages, episodes.mask).sum()


def lvc_loss(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
             advantages: Tensor) -> Tensor:
    """ProMP's low-variance curvature objective, negated: -mean(pi / stop_grad(pi) * A).

    Same gradient as ``reinforce_loss``; its value is -mean(A) (the ratio is 1).
    Summed over tasks. Scalar.
    """
    _check_advantages(episodes, advantages)
    logp = log_probs(policy, params, episodes)
    return -masked_mean_per_task(magic_box(logp) * advantages, episodes.mask).sum()


def dice_loss(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
              advantages: Tensor) -> Tensor:
    """DiCE (Foerster et al. 2018) with a baseline (Mao et al. 2019), negated.

    Step t's cost c_t = A_t - A_{t+1} (A = 0 after the episode) is weighted by
    magic_box(w_t), w_t = sum_{t' <= t} log pi_t' the log-probability of the
    actions that caused it. As sum_{t' >= t} c_t' = A_t, the gradient is
    ``reinforce_loss``'s. With A_t = G_t - b(s_t) and gamma = 1 this is DiCE with
    Mao et al.'s baseline term sum_t (magic_box(w_{t-1}) - magic_box(w_t)) b_t,
    unbiased at every order; with gamma < 1, like the other estimators here,
    step t is not down-weighted by gamma^t. Value: -sum_e A_{e,0} / valid steps.
    Summed over tasks. Scalar.
    """
    _check_advantages(episodes, advantages)
    mask = episodes.mask
    logp = log_probs(policy, params, episodes) * mask
    causal_logp = torch.cumsum(logp, dim=-1)  # (T, E, H): actions up to and including t
    return -masked_mean_per_task(magic_box(causal_logp) * dice_costs(advantages, mask),
                                 mask).sum()


def dice_costs(advantages: Tensor, mask: Tensor) -> Tensor:
    """DiCE's step costs c_t = A_t - A_{t+1}, with A = 0 after the episode: (T, E, H)."""
    advantages = advantages * mask
    next_advantages = torch.cat([advantages[..., 1:], torch.zeros_like(advantages[..., :1])], -1)
    return advantages - next_advantages


INNER_LOSSES: dict[str, PolicyLoss] = {
    "reinforce": reinforce_loss,
    "lvc": lvc_loss,
    "dice": dice_loss,
}


def inner_loss(name: str) -> PolicyLoss:
    """The inner-loop objective for the config's ``inner_objective``."""
    if name not in INNER_LOSSES:
        raise ValueError(f"inner_objective must be one of {sorted(INNER_LOSSES)}, got {name!r}")
    return INNER_LOSSES[name]


def surrogate_loss(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
                   advantages: Tensor, old_log_probs: Tensor) -> Tensor:
    """TRPO's surrogate: -mean(exp(log pi - old log pi) * A), mean over tasks. Scalar.

    old_log_probs (T, E, H): log-probabilities under the policy that sampled
    ``episodes`` (constants).
    """
    _check_advantages(episodes, advantages)
    if old_log_probs.shape != advantages.shape:
        raise ValueError(f"old_log_probs must be (T, E, H) = {tuple(advantages.shape)}, "
                         f"got {tuple(old_log_probs.shape)}")
    return surrogate(log_probs(policy, params, episodes), old_log_probs, advantages,
                     episodes.mask)


def surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor,
              mask: Tensor) -> Tensor:
    """-mean(exp(log_probs - old_log_probs) * advantages), per task then over tasks.

    All (T, E, H); ``old_log_probs`` are constants. Scalar.
    """
    ratio = torch.exp(log_probs - old_log_probs.detach())
    return -masked_mean_per_task(ratio * advantages, mask).mean()


def mean_kl(old: distributions.Distribution, new: distributions.Distribution,
            mask: Tensor) -> Tensor:
    """KL(old || new) per step, mean over each task's valid steps, mean over tasks. Scalar.

    old, new: distributions with batch shape (T, E, H), e.g. the policy called
    with detached old parameters and with the current ones on the same obs.
    """
    if old.batch_shape != mask.shape or new.batch_shape != mask.shape:
        raise ValueError(f"distributions must have batch shape {tuple(mask.shape)}, got "
                         f"{tuple(old.batch_shape)} and {tuple(new.batch_shape)}")
    kl = distributions.kl_divergence(old, new)
    return masked_mean_per_task(kl, mask).mean()
