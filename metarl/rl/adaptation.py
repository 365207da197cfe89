"""The RL inner step: policy-gradient adaptation of stacked per-task parameters.

One home for the three ways a meta-iteration uses it:

- ``adapt_through``: from the meta-parameters, differentiable (the TRPO
  surrogate and KL differentiate through it);
- ``inner_step``: one step from constant stacked parameters, as constants
  (sampling, evaluation, the line search);
- ``inner_iterates``: the constants before every step and after the last (the
  points at which the Fisher products take their Hessians).

All go through ``metarl.meta.adapt``, so they take the same step.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from metarl.functional import Params, detach_params, expand_params
from metarl.meta import adapt
from metarl.rl.episodes import Episodes
from metarl.rl.losses import PolicyLoss

TrainBatches = list[tuple[Episodes, Tensor]]  # per inner step: (episodes, advantages)


def adapt_through(policy: nn.Module, meta_params: Mapping[str, Tensor], train: TrainBatches,
                  loss: PolicyLoss, lr: float, first_order: bool,
                  num_tasks: int | None = None) -> Params:
    """Stacked (T, ...) adapted parameters after one inner step per train batch,
    differentiable in ``meta_params`` (second order unless ``first_order``).

    num_tasks: T, needed only when ``train`` is empty (no inner step).
    """
    params = expand_params(meta_params, num_tasks or train[0][0].num_tasks)
    for episodes, adv in train:
        params = adapt(lambda p, batch: loss(policy, p, *batch), params, (episodes, adv),
                       lr, 1, first_order)
    return params


def inner_step(policy: nn.Module, params: Mapping[str, Tensor], episodes: Episodes,
               adv: Tensor, loss: PolicyLoss, lr: float) -> Params:
    """One inner step from constant stacked ``params``, as constants."""
    params = {k: v.requires_grad_() for k, v in detach_params(params).items()}
    return detach_params(adapt(lambda p, b: loss(policy, p, *b), params, (episodes, adv), lr, 1,
                               first_order=True))


def inner_iterates(policy: nn.Module, meta_params: Mapping[str, Tensor], train: TrainBatches,
                   loss: PolicyLoss, lr: float, num_tasks: int) -> list[Params]:
    """The stacked (T, ...) parameters before every inner step and after the last,
    as constants: len(train) + 1 iterates, the first the meta-parameters."""
    iterates = [detach_params(expand_params(meta_params, num_tasks))]
    for episodes, adv in train:
        iterates.append(inner_step(policy, iterates[-1], episodes, adv, loss, lr))
    return iterates
