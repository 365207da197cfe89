"""Random affine distortions of few-shot training images, against exact pixel moves."""

import math

import numpy as np
import pytest
import torch

from metarl.config import ConfigError, load_config
from metarl.supervised.augment import affine_matrices, distort, random_distortion


def images(count=3, size=8):
    return torch.rand(count, 1, size, size, generator=torch.Generator().manual_seed(0))


def one(angle=0.0, shift=(0.0, 0.0), scale=1.0, size=8):
    return affine_matrices(torch.tensor([angle], dtype=torch.float64),
                           torch.tensor([shift], dtype=torch.float64),
                           torch.tensor([scale], dtype=torch.float64), size)


def test_no_distortion_is_the_identity():
    x = images(1)
    assert torch.allclose(distort(x, one()), x, atol=1e-6)


def test_a_quarter_turn_is_rot90_counter_clockwise():
    x = images(1)
    assert torch.allclose(distort(x, one(angle=math.pi / 2)), torch.rot90(x, 1, (-2, -1)),
                          atol=1e-5)


def test_a_whole_pixel_shift_moves_the_content_and_repeats_the_border():
    x = images(1)
    moved = distort(x, one(shift=(2.0, -1.0)))  # 2 right, 1 up
    assert torch.allclose(moved[..., :-1, 2:], x[..., 1:, :-2], atol=1e-6)
    assert torch.allclose(moved[..., :, 0], moved[..., :, 2], atol=1e-6)  # left: the border
    assert torch.allclose(moved[..., :, 1], moved[..., :, 2], atol=1e-6)


def test_doubling_the_scale_reads_the_centre():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3:5, 3:5] = 1.0  # a 2x2 square in the middle becomes 4x4
    grown = distort(x, one(scale=2.0))
    assert grown[..., 2:6, 2:6].min() > 0.2 and grown[..., :1, :].max() == 0


def test_random_distortion_draws_from_the_generator_per_image():
    x = images(4).reshape(2, 2, 1, 8, 8)
    a = random_distortion(np.random.default_rng(1), x, 20.0, 2.0, 0.1)
    b = random_distortion(np.random.default_rng(1), x, 20.0, 2.0, 0.1)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a[0, 0], x[0, 0], atol=1e-3)
    assert torch.allclose(random_distortion(np.random.default_rng(1), x, 0.0, 0.0, 0.0), x,
                          atol=1e-6)


def test_augment_keys_are_range_checked():
    load_config(data={"kind": "fewshot", "augment_rotation": 15, "augment_shift": 2,
                      "augment_scale": 0.1})
    with pytest.raises(ConfigError, match="augment_scale"):
        load_config(data={"kind": "fewshot", "augment_scale": 1.5})
    with pytest.raises(ConfigError, match="augment_shift"):
        load_config(data={"kind": "fewshot", "augment_shift": -1})
