"""Omniglot reader and N-way K-shot sampler on small generated data in the official layout."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.supervised.fewshot import sample_fewshot
from metarl.supervised.omniglot import (
    read_omniglot,
    split_by_alphabet,
    split_by_character,
    with_mirrors,
    with_rotations,
)


def drawing(alphabet: int, character: int, drawer: int) -> bytes:
    """A 105x105 binary PNG, white background, a black block whose place encodes the ids."""
    pixels = np.ones((105, 105), dtype=bool)
    row, col = 10 * alphabet + 5, 10 * character + 5
    pixels[row : row + 20, col : col + 10 + drawer] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def layout(alphabets, characters=3, split="images_background"):
    for a, alphabet in enumerate(alphabets):
        for c in range(1, characters + 1):
            for d in range(1, 21):
                name = f"{split}/{alphabet}/character{c:02d}/{a}{c:02d}_{d:02d}.png"
                yield name, drawing(a, c, d)


def make_zip(path, alphabets, **kw):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in layout(alphabets, **kw):
            archive.writestr(name, data)
    return path


def test_zip_and_folder_read_the_same(tmp_path):
    archive = make_zip(tmp_path / "small.zip", ["Greek", "Latin"])
    folder = tmp_path / "extracted"
    zipfile.ZipFile(archive).extractall(folder)
    from_zip, from_folder = read_omniglot([archive]), read_omniglot([folder])
    assert from_zip.names == from_folder.names == [f"{a}/character{c:02d}" for a in
                                                   ("Greek", "Latin") for c in (1, 2, 3)]
    assert from_zip.images.shape == (6, 20, 28, 28) and from_zip.images.dtype == torch.uint8
    assert torch.equal(from_zip.images, from_folder.images)
    # Strokes are bright after inversion; the background is dark.
    assert from_zip.images[0, 0, 0, 0] == 0 and from_zip.images.max() > 200


def test_shared_characters_across_archives_are_counted_once(tmp_path):
    one = make_zip(tmp_path / "one.zip", ["Greek", "Latin", "Korean"])
    two = make_zip(tmp_path / "two.zip", ["Greek", "Latin", "Tagalog"])
    both = read_omniglot([one, two])
    assert len(both.names) == 4 * 3 and both.alphabets == ["Greek", "Korean", "Latin", "Tagalog"]
    train, test = split_by_alphabet(both, ["Tagalog"])
    assert set(train.names).isdisjoint(test.names) and len(test.names) == 3


def test_bad_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Omniglot data not found: .*missing.zip"):
        read_omniglot([tmp_path / "missing.zip"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG images in the Omniglot layout"):
        read_omniglot([tmp_path / "empty"])
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in layout(["Greek"], characters=1):
            archive.writestr(name, b"not a png" if name.endswith("_07.png") else data)
    with pytest.raises(ValueError, match=r"unreadable image Greek/character01/001_07.png"):
        read_omniglot([broken])


def test_rotations_make_four_classes_per_character(tmp_path):
    chars = read_omniglot([make_zip(tmp_path / "a.zip", ["Greek"], characters=2)])
    rotated = with_rotations(chars)
    assert rotated.images.shape[0] == 8 and rotated.names[2] == "Greek/character01@rot90"
    assert torch.equal(rotated.images[2], torch.rot90(chars.images[0], 1, dims=(1, 2)))
    assert torch.equal(torch.rot90(rotated.images[6], 1, dims=(1, 2)), chars.images[0])


def test_mirrors_make_two_classes_per_character(tmp_path):
    chars = read_omniglot([make_zip(tmp_path / "a.zip", ["Greek"], characters=2)])
    mirrored = with_mirrors(chars)
    assert mirrored.images.shape[0] == 4 and mirrored.names[3] == "Greek/character02@mirror"
    assert torch.equal(mirrored.images[:2], chars.images)
    assert torch.equal(torch.flip(mirrored.images[2], dims=(2,)), chars.images[0])
    assert not torch.equal(mirrored.images[2], chars.images[0])  # the drawings are not symmetric


def test_sampler_shapes_labels_and_no_mixing_of_splits(tmp_path):
    chars = read_omniglot([make_zip(tmp_path / "a.zip", ["Greek", "Latin"], characters=4)])
    train, test = split_by_character(chars, 5, np.random.default_rng(0))
    assert set(train.names).isdisjoint(test.names) and len(test.names) == 3
    rng = np.random.default_rng(1)
    (xs, ys), (xq, yq) = sample_fewshot(rng, train.images, num_tasks=6, ways=3, shots=2, query=4)
    assert xs.shape == (6, 6, 1, 28, 28) and xq.shape == (6, 12, 1, 28, 28)
    assert ys.tolist()[0] == [0, 0, 1, 1, 2, 2] and yq.shape == (6, 12)
    assert 0.0 <= xs.min() and xs.max() <= 1.0
    test_images = {bytes(im.numpy()) for im in test.images.flatten(0, 1)}
    where = {bytes(train.images[c, d].numpy()): (c, d) for c in range(5) for d in range(20)}
    for t in range(6):
        classes = set()
        for label in range(3):
            images = torch.cat([xs[t][ys[t] == label], xq[t][yq[t] == label]])
            keys = [bytes((im[0] * 255).round().byte().numpy()) for im in images]
            assert not set(keys) & test_images
            found = [where[k] for k in keys]  # KeyError if not a training image
            # One label is one character, with 6 distinct drawings of it.
            assert len({c for c, _ in found}) == 1 and len({d for _, d in found}) == 6
            classes.add(found[0][0])
        assert len(classes) == 3
    with pytest.raises(ValueError, match="6-way tasks need at least 6 classes"):
        sample_fewshot(rng, train.images[:5], 2, 6, 1, 1)


def test_a_truncated_archive_is_there_but_unreadable_not_missing(tmp_path):
    archive = make_zip(tmp_path / "images_background.zip", ["Greek"], characters=1)
    archive.write_bytes(archive.read_bytes()[:1000])  # an interrupted download
    with pytest.raises(ValueError, match="is there but is not a readable zip archive"):
        read_omniglot([archive])
