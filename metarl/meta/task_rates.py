"""Task-adaptive inner rates: the step size of each parameter tensor depends on the task.

A small encoder maps an embedding of the task's support set (the mean of the
model's last hidden features over the support examples, at the parameters the
adaptation starts from) to one scale per parameter tensor, ``2 sigmoid(W e + b)``,
so each rate is ``alpha * scale`` in (0, 2 alpha). ``W`` and ``b`` start at zero:
the first meta-iterations are MAML's. The encoder is meta-learned with the model
by the outer optimiser, through the adaptation (second order), and the embedding
passes gradient to the model's parameters too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from metarl.functional import Params, call_per_task


class TaskRates(nn.Module):
    """Encoder of task-adaptive rates for ``model`` (which has ``feature_dim`` and
    ``forward(x, features_only=True)``)."""

    def __init__(self, model: nn.Module, init_lr: float, per_task: str = "native"):
        """per_task: how ``model`` runs stacked parameters, a
        ``metarl.functional.call_per_task`` mode."""
        super().__init__()
        self.per_task = per_task
        self.names = [name for name, _ in model.named_parameters()]
        self.init_lr = float(init_lr)
        self.encoder = nn.Linear(model.feature_dim, len(self.names))
        nn.init.zeros_(self.encoder.weight)
        nn.init.zeros_(self.encoder.bias)

    def for_tasks(self, model: nn.Module, params: Params, support_x: Tensor) -> Params:
        """Per-task rates broadcastable against stacked params.

        params: stacked (T, ...); support_x: (T, K, ...) -> {name: (T, 1, ..., 1)}.
        """
        features = call_per_task(model, params, support_x, self.per_task,
                                 features_only=True)  # (T, K, F)
        scales = 2.0 * torch.sigmoid(self.encoder(features.mean(dim=1)))  # (T, P)
        return {name: (self.init_lr * scales[:, i]).view(-1, *[1] * (params[name].dim() - 1))
                for i, name in enumerate(self.names)}

