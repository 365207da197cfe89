"""ANIL (Raghu et al. 2020): the inner loop adapts only the head.

Pass ``inner_names=head_names(model)`` to ``metarl.meta.adapt``.
"""

from __future__ import annotations

from torch import nn


def head_names(model: nn.Module) -> list[str]:
    """Names of the last layer's parameters (the classifier / regression head)."""
    if hasattr(model, "head_names"):
        return list(model.head_names())
    names = [name for name, _ in model.named_parameters()]
    last_module = names[-1].rsplit(".", 1)[0]
    return [n for n in names if n.rsplit(".", 1)[0] == last_module]
