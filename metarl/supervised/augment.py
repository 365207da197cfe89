"""Random affine distortions of training images, one per image: a regulariser against
fitting the few training classes (Omniglot's minimal split has 136 characters).

Only training tasks are distorted, support and query alike; held-out tasks are
evaluated on the images as drawn.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def affine_matrices(angles: Tensor, shifts: Tensor, scales: Tensor, size: int) -> Tensor:
    """``affine_grid`` matrices (B, 2, 3) for square images of ``size`` pixels.

    angles (B,) radians, counter-clockwise as the image is seen (rows down);
    shifts (B, 2) pixels (x right, y down) by which the content moves; scales (B,)
    > 1 enlarges it. Each output pixel p reads the input at R^-1 (p - shift) / scale.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    # With rows pointing down, a counter-clockwise turn of the content is a clockwise
    # rotation of the sampling grid in (x, y) coordinates.
    rotation_inverse = torch.stack([torch.stack([cos, -sin], -1),
                                    torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    linear = rotation_inverse / scales[:, None, None]
    offset = -linear @ (shifts * (2.0 / size))[..., None]  # pixels -> [-1, 1] units
    return torch.cat([linear, offset], dim=-1)


def distort(images: Tensor, matrices: Tensor) -> Tensor:
    """images (B, c, H, W) resampled bilinearly through ``matrices`` (B, 2, 3);
    pixels from outside the image take the border's value (Omniglot: background)."""
    grid = F.affine_grid(matrices.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def random_distortion(rng: np.random.Generator, images: Tensor, rotation: float, shift: float,
                      scale: float) -> Tensor:
    """Each image turned by U(-rotation, rotation) degrees, moved by U(-shift, shift)
    pixels along each axis and scaled by U(1 - scale, 1 + scale), drawn from ``rng``.

    images: (..., c, H, W) with H == W; returns the same shape.
    """
    *lead, c, h, w = images.shape
    if h != w:
        raise ValueError(f"distortions are for square images, got {h}x{w}")
    count = math.prod(lead)
    angles = torch.from_numpy(rng.uniform(-rotation, rotation, count) * (math.pi / 180))
    shifts = torch.from_numpy(rng.uniform(-shift, shift, (count, 2)))
    scales = torch.from_numpy(rng.uniform(1 - scale, 1 + scale, count))
    matrices = affine_matrices(angles, shifts, scales, h)
    return distort(images.reshape(count, c, h, w), matrices).reshape(images.shape)
