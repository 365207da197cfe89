"""N-way K-shot classification tasks drawn from a set of classes, batched over tasks.

A task picks N classes, relabels them 0..N-1 in random order, and takes K
support and Q query images of each; all T tasks of a meta-batch come out as
one tensor each, with no Python loop over images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sample_fewshot(rng: np.random.Generator, images: Tensor, num_tasks: int, ways: int,
                   shots: int, query: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """A meta-batch of N-way K-shot tasks.

    images: uint8 (C, D, H, W) or (C, D, channels, H, W): C classes with D examples each.
    Returns (support, query): support x (T, N*K, channels, H, W) float32 in [0, 1],
    y (T, N*K) int64; query likewise with N*Q examples. Examples are ordered by
    label within each set.
    """
    num_classes, per_class = images.shape[:2]
    if ways > num_classes:
        raise ValueError(f"{ways}-way tasks need at least {ways} classes, the set has "
                         f"{num_classes}")
    if shots + query > per_class:
        raise ValueError(f"shots + query = {shots + query} exceeds the {per_class} examples "
                         "per class")
    # Random classes per task, and random distinct examples per (task, class).
    classes = np.argsort(rng.random((num_tasks, num_classes)), axis=1)[:, :ways]  # (T, N)
    examples = np.argsort(rng.random((num_tasks, ways, per_class)), axis=2)[..., :shots + query]
    picked = images[torch.from_numpy(classes)[..., None], torch.from_numpy(examples)]
    picked = picked.float().div_(255)
    if picked.dim() == 5:  # grayscale (T, N, K+Q, H, W): add the channel dim
        picked = picked.unsqueeze(3)
    labels = torch.arange(ways).view(1, ways, 1)

    def flatten(part: Tensor, count: int) -> tuple[Tensor, Tensor]:
        x = part.reshape(num_tasks, ways * count, *part.shape[3:])
        y = labels.expand(num_tasks, ways, count).reshape(num_tasks, ways * count)
        return x, y

    return flatten(picked[:, :, :shots], shots), flatten(picked[:, :, shots:], query)
