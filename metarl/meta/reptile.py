"""Reptile (Nichol et al. 2018): move the meta-parameters toward the adapted ones."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from metarl.functional import Params


def reptile_grads(params: Mapping[str, Tensor], adapted: Mapping[str, Tensor]) -> Params:
    """The Reptile direction as a gradient: ``p - mean_t(adapted_t)``.

    params: the meta-parameters (unstacked); adapted: stacked (T, ...) after the
    inner steps. Fed to an optimiser as ``.grad``, plain SGD with rate eps gives
    the paper's update ``p += eps * mean_t(adapted_t - p)``.
    """
    return {k: p.detach() - adapted[k].detach().mean(dim=0) for k, p in params.items()}
