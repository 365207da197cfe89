"""Meta-SGD (Li et al. 2017): learned per-parameter inner learning rates.

The rates are meta-parameters trained with the model by the outer optimiser;
pass ``rates.as_dict()`` as ``lr`` to ``metarl.meta.adapt``.
"""

from __future__ import annotations

import torch
from torch import nn

from metarl.functional import Params


class MetaSGDRates(nn.Module):
    """One learnable rate tensor per model parameter, initialised to ``init_lr``."""

    def __init__(self, model: nn.Module, init_lr: float):
        super().__init__()
        self.names = [name for name, _ in model.named_parameters()]
        self.rates = nn.ParameterList(
            nn.Parameter(torch.full_like(p, init_lr)) for _, p in model.named_parameters()
        )

    def as_dict(self) -> Params:
        return dict(zip(self.names, self.rates))
