"""MAML++'s training recipe (Antoniou et al., "How to train your MAML", ICLR 2019).

Each piece is its own option on MAML (``metarl.supervised.config``):

- multi-step loss: the query loss after every inner step, weighted; the weights
  anneal from uniform to the last step alone over ``multi_step_loss_iterations``
  (then the last step alone, as the paper's code);
- per-step batch norm: inner step k's forward (and the query loss after it) uses
  its own batch-norm weights and biases, meta-learned and not adapted;
- learned per-step rates (LSLR): one inner rate per parameter tensor and step;
- first order for the first ``first_order_iterations``, then second order;
- cosine annealing of the outer rate (``outer_lr_at``).

Steps beyond the trained K (at evaluation) reuse step K's batch norm and rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from metarl.evaluate import factor_at
from metarl.functional import Params, expand_params
from metarl.meta.adapt import adapt
from metarl.schema import ConfigError


class StepParams(nn.Module):
    """Per-step meta-parameters: batch-norm weight and bias sets, and inner rates.

    model: its parameters named ``norm_*`` are the batch-norm ones (Conv4).
    """

    def __init__(self, model: nn.Module, steps: int, init_lr: float, per_step_norms: bool,
                 learned_rates: bool):
        super().__init__()
        self.steps = steps
        named = dict(model.named_parameters())
        self.norm_names = [k for k in named if k.startswith("norm_")] if per_step_norms else []
        self.inner_names = [k for k in named if k not in self.norm_names]
        self.norms = nn.ParameterList(
            nn.Parameter(named[k].detach().clone().expand(steps, -1).clone())
            for k in self.norm_names)
        self.rates = nn.ParameterList(
            nn.Parameter(torch.full((steps,), float(init_lr))) for _ in self.inner_names
        ) if learned_rates else None

    def norms_at(self, step: int, num_tasks: int) -> Params:
        """Step ``step``'s (0-based) batch-norm parameters, stacked (T, C)."""
        k = min(step, self.steps - 1)
        return expand_params({n: p[k] for n, p in zip(self.norm_names, self.norms)}, num_tasks)

    def rate_at(self, step: int, inner_lr: float) -> float | Params:
        """Step ``step``'s inner rates: learned ones by tensor name, else ``inner_lr``."""
        if self.rates is None:
            return inner_lr
        k = min(step, self.steps - 1)
        return {n: r[k] for n, r in zip(self.inner_names, self.rates)}

    def test_time(self, inner_lr: float, steps: int, num_tasks: int, later_factor=1.0):
        """(rates, batch-norm parameters) of evaluation steps 0..steps-1, detached.

        later_factor (``metarl.evaluate.factor_at``) scales the steps after the first
        unless the rates are learned (they already differ per step: then only 1 is accepted).
        """
        if self.rates is not None and any(factor_at(later_factor, k) != 1.0
                                          for k in range(steps)):
            raise ConfigError("a run with learned per-step rates adapts with them: "
                             f"--later-factor must be 1, got {later_factor}")
        with torch.no_grad():
            rates = [self.rate_at(k, inner_lr * factor_at(later_factor, k))
                     for k in range(steps)]
            rates = [r if isinstance(r, float) else {n: v.detach() for n, v in r.items()}
                     for r in rates]
            norms = [{n: v.detach() for n, v in self.norms_at(k, num_tasks).items()}
                     for k in range(max(steps, 1))]
        return rates, norms


def step_loss_weights(steps: int, iteration: int, anneal_iterations: int) -> list[float]:
    """Weights of the query losses after inner steps 1..K at ``iteration``.

    Uniform at first; the K-1 earlier weights fall linearly to 0.03/K and the last
    rises to match over ``anneal_iterations``; after that (or if 0) the last step alone.
    """
    if anneal_iterations == 0 or iteration >= anneal_iterations or steps == 1:
        return [0.0] * (steps - 1) + [1.0]
    progress = iteration / anneal_iterations
    floor = 0.03 / steps
    earlier = max(1.0 / steps - progress / steps, floor)
    last = min(1.0 / steps + progress * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    return [earlier] * (steps - 1) + [last]


def multi_step_loss(model: nn.Module, task_loss, params: Params, support, query,
                    inner_lr: float, weights: list[float], step_params: StepParams | None,
                    first_order: bool) -> Tensor:
    """Sum over inner steps k of ``weights[k]`` times the mean query loss after step k + 1.

    task_loss(model, stacked params, (x, y)) -> (T,). With weights [0, ..., 0, 1] and no
    ``step_params`` this is MAML's meta-objective (tested).
    """
    num_tasks = support[0].shape[0]
    names = step_params.inner_names if step_params is not None else list(params)
    current = expand_params({k: params[k] for k in names}, num_tasks)
    total = 0.0
    for k, weight in enumerate(weights):
        norms = step_params.norms_at(k, num_tasks) if step_params is not None else {}
        rate = step_params.rate_at(k, inner_lr) if step_params is not None else inner_lr
        current = adapt(lambda p, b, norms=norms: task_loss(model, {**p, **norms}, b).sum(),
                        current, support, rate, 1, first_order)
        if weight > 0:
            total = total + weight * task_loss(model, {**current, **norms}, query).mean()
    return total


def outer_lr_at(iteration: int, iterations: int, outer_lr: float, min_lr: float) -> float:
    """Cosine annealing from ``outer_lr`` at iteration 0 to ``min_lr`` at ``iterations``."""
    return min_lr + 0.5 * (outer_lr - min_lr) * (1.0 + math.cos(math.pi * iteration / iterations))
