"""The RL inner step: policy-gradient adaptation of stacked per-task parameters.

One home for the three ways a meta-iteration uses it:

- ``adapt_through``: from the meta-parameters, differentiable (the TRPO
  surrogate and KL differentiate through it);
- ``inner_step``: one step from constant stacked parameters, as constants
  (sampling, evaluation, the line search);
- ``inner_iterates``: the constants before every step and after the last (the
  points at which the Fisher products take their Hessians).

All go through ``metarl.meta.adapt``, so they take the same step.

Meta-SGD's learned rates travel inside the meta-parameter dict, one entry
``inner_rate.<name>`` per policy parameter (``with_rates``), so that the TRPO
step, its line search and its Fisher products treat them as meta-parameters
like the policy's; ANIL passes ``inner_names`` (the policy's last layer).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from metarl.functional import Params, detach_params, expand_params
from metarl.meta import adapt
from metarl.rl.episodes import Episodes
from metarl.rl.losses import PolicyLoss

TrainBatches = list[tuple[Episodes, Tensor]]  # per inner step: (episodes, advantages)
RATE_PREFIX = "inner_rate."


def with_rates(policy_params: Mapping[str, Tensor], rates: Mapping[str, Tensor]) -> Params:
    """One meta-parameter dict: the policy's parameters, then Meta-SGD's rates by name."""
    return {**policy_params, **{RATE_PREFIX + k: v for k, v in rates.items()}}


def split_rates(meta_params: Mapping[str, Tensor], lr: float) -> tuple[Params, float | Params]:
    """(the policy's parameters, the inner rate: Meta-SGD's rates by name, else ``lr``)."""
    policy = {k: v for k, v in meta_params.items() if not k.startswith(RATE_PREFIX)}
    rates = {k[len(RATE_PREFIX):]: v for k, v in meta_params.items()
             if k.startswith(RATE_PREFIX)}
    return policy, (rates or lr)


def inner_names_of(policy: nn.Module, config) -> list[str] | None:
    """The parameters the inner step adapts: ANIL the mean network's last layer, else all."""
    if config.method != "anil":
        return None
    names = [k for k, _ in policy.named_parameters() if k.startswith("mean.") or
             k.startswith("logits.")]
    last = names[-1].rsplit(".", 1)[0]
    return [k for k in names if k.rsplit(".", 1)[0] == last]


def adapt_through(policy: nn.Module, meta_params: Mapping[str, Tensor], train: TrainBatches,
                  loss: PolicyLoss, lr: float, first_order: bool,
                  num_tasks: int | None = None, inner_names=None) -> Params:
    """Stacked (T, ...) adapted policy parameters after one inner step per train batch,
    differentiable in ``meta_params`` (and its rates; second order unless ``first_order``).

    num_tasks: T, needed only when ``train`` is empty (no inner step).
    """
    policy_params, rate = split_rates(meta_params, lr)
    params = expand_params(policy_params, num_tasks or train[0][0].num_tasks)
    for episodes, adv in train:
        params = adapt(lambda p, batch: loss(policy, p, *batch), params, (episodes, adv),
                       rate, 1, first_order, inner_names)
    return params


def inner_step(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
               adv: Tensor, loss: PolicyLoss, lr: float | Mapping[str, Tensor],
               inner_names=None) -> Params:
    """One inner step from constant stacked ``params``, as constants.

    lr: a float, or Meta-SGD's rates by parameter name (constants here)."""
    params = {k: v.requires_grad_() for k, v in detach_params(params).items()}
    if isinstance(lr, Mapping):
        lr = detach_params(lr)
    return detach_params(adapt(lambda p, b: loss(policy, p, *b), params, (episodes, adv), lr, 1,
                               True, inner_names))


def inner_iterates(policy: nn.Module, meta_params: Mapping[str, Tensor], train: TrainBatches,
                   loss: PolicyLoss, lr: float, num_tasks: int,
                   inner_names=None) -> list[Params]:
    """The stacked (T, ...) policy parameters before every inner step and after the last,
    as constants: len(train) + 1 iterates, the first the meta-parameters."""
    policy_params, rate = split_rates(meta_params, lr)
    iterates = [detach_params(expand_params(policy_params, num_tasks))]
    for episodes, adv in train:
        iterates.append(inner_step(policy, iterates[-1], episodes, adv, loss, rate, inner_names))
    return iterates
