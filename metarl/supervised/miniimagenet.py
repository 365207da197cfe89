"""MiniImageNet with the split of Ravi & Larochelle (2017), read from its usual layout.

Layout::

    <root>/images/<filename>.jpg
    <root>/train.csv  val.csv  test.csv      columns: filename,label

The 100 classes (64 train, 16 validation, 20 test, 600 images each) are the
csv labels (WordNet ids). Images are resized to ``image_size`` (the paper:
84) with Lanczos filtering, as the MAML paper's preprocessing did, and cached
in memory as one uint8 tensor (classes, images, 3, H, W): the 64 training
classes take 813 MB at 84x84.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from metarl.supervised.images import DataError, ImageClasses, decode

SPLITS = ("train", "val", "test")


def read_split_csv(path: Path) -> dict[str, list[str]]:
    """label -> file names, in file order, from a ``filename,label`` csv."""
    if not path.is_file():
        raise DataError(f"MiniImageNet split file not found: {path} (expected images/ and "
                        "train.csv, val.csv, test.csv with columns filename,label)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(f"{path}: expected the header 'filename,label', "
                        f"got {','.join(rows[0]) if rows else 'an empty file'!r}")
    by_label: dict[str, list[str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise DataError(f"{path}, line {line}: expected 2 columns filename,label, got {row!r}")
        by_label.setdefault(row[1].strip(), []).append(row[0].strip())
    if not by_label:
        raise DataError(f"{path}: no images listed")
    return by_label


def read_miniimagenet(root: str | Path, split: str, image_size: int = 84) -> ImageClasses:
    """Read one split: images uint8 (classes, per_class, 3, image_size, image_size).

    Every class must have the same number of images (600 in the real data),
    since the set is one tensor.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not (root / "images").is_dir():
        raise DataError(f"MiniImageNet data not found: {root / 'images'} is not a folder "
                        "(expected <root>/images/*.jpg and <root>/train.csv, val.csv, test.csv)")
    by_label = read_split_csv(root / f"{split}.csv")
    names = sorted(by_label)
    counts = {len(by_label[n]) for n in names}
    if len(counts) != 1:
        smallest = min(names, key=lambda n: len(by_label[n]))
        raise DataError(f"{root / (split + '.csv')}: classes have different numbers of images "
                        f"({sorted(counts)}; e.g. {smallest} has {len(by_label[smallest])})")
    per_class = counts.pop()
    images = np.zeros((len(names), per_class, 3, image_size, image_size), dtype=np.uint8)
    for c, name in enumerate(names):
        for i, file_name in enumerate(by_label[name]):
            path = root / "images" / file_name
            try:
                data = path.read_bytes()
            except OSError:
                raise DataError(f"MiniImageNet image missing or unreadable: {path}") from None
            images[c, i] = decode(data, image_size, str(path), "RGB").transpose(2, 0, 1)
    return ImageClasses(torch.from_numpy(images), names)
