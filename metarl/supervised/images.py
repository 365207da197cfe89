"""Shared pieces of the image readers: the error type, the class container, decoding.

Readers decode every image once and keep the whole set in memory as one
uint8 tensor (classes, examples, [channels,] H, W), so that sampling tasks
costs no I/O and no decoding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from torch import Tensor


class DataError(ValueError):
    """A data set is missing, in the wrong layout or unreadable; the message names the path."""


@dataclass(frozen=True)
class ImageClasses:
    """images: uint8 (C, D, H, W) or (C, D, channels, H, W); names[i] names class i."""

    images: Tensor
    names: list[str]

    def subset(self, keep: list[int]):
        return type(self)(self.images[keep], [self.names[i] for i in keep])

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def per_class(self) -> int:
        return int(self.images.shape[1])


def decode(data: bytes, image_size: int, where: str, mode: str = "L") -> np.ndarray:
    """Image bytes -> uint8 array (image_size, image_size) for mode "L", (..., 3) for "RGB".

    Resized with Lanczos filtering (as the MAML paper's preprocessing) unless
    already at the size. ``where`` names the file in the error message.
    """
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image = image.convert(mode)
    except Exception as err:  # PIL raises several types for a damaged file
        raise DataError(f"unreadable image {where} ({type(err).__name__})") from None
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), resample=Image.LANCZOS)
    return np.asarray(image, dtype=np.uint8)
