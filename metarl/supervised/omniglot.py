"""Omniglot (Lake et al. 2015), read straight from the official archives or a folder.

Layout, as in ``images_background.zip`` / ``images_evaluation.zip`` and the
minimal splits ``images_background_small1.zip`` / ``_small2.zip``::

    <split>/<Alphabet>/<characterNN>/<id>_<drawer>.png

A character is identified by ``Alphabet/characterNN``; the same character in
two archives (small1 and small2 share Greek and Latin) is read once. Images
are resized to ``image_size`` (the paper: 28) with Lanczos filtering and
inverted so that strokes are bright, then cached in memory as one uint8
tensor (characters, drawings, H, W), so that sampling tasks costs no I/O.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from metarl.supervised.images import DataError, ImageClasses
from metarl.supervised.images import decode as decode_image

DRAWINGS = 20  # every Omniglot character has 20 drawings


class Characters(ImageClasses):
    """images: uint8 (C, DRAWINGS, H, W), strokes bright; names[i] = "Alphabet/characterNN"."""

    @property
    def alphabets(self) -> list[str]:
        return sorted({n.split("/")[0] for n in self.names})


def _png_entries(source: Path) -> dict[str, list[tuple[str, Callable[[], bytes]]]]:
    """Character name -> [(file name, reader of its bytes)] for a zip or a folder."""
    found: dict[str, list] = {}
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        members = [PurePosixPath(m) for m in archive.namelist() if m.lower().endswith(".png")]
        for m in members:
            if len(m.parts) >= 3:
                key = f"{m.parts[-3]}/{m.parts[-2]}"
                found.setdefault(key, []).append((m.name, lambda m=m: archive.read(str(m))))
    elif source.is_file():  # there, but not a zip archive: truncated or damaged
        raise DataError(f"{source} is there but is not a readable zip archive (damaged or "
                        "incomplete download?); download it again or extract it by hand")
    elif source.is_dir():
        for png in sorted(source.rglob("*.png")):
            key = f"{png.parent.parent.name}/{png.parent.name}"
            found.setdefault(key, []).append((png.name, png.read_bytes))
    else:
        raise FileNotFoundError(f"Omniglot data not found: {source} (expected an official "
                                "archive such as images_background.zip or its extracted folder)")
    if not found:
        raise DataError(f"{source}: no PNG images in the Omniglot layout "
                         "<split>/<Alphabet>/<character>/<image>.png")
    return found


def decode(data: bytes, image_size: int, where: str) -> np.ndarray:
    """PNG bytes -> (image_size, image_size) uint8, strokes bright."""
    return 255 - decode_image(data, image_size, where, "L")


def read_omniglot(sources: list[str | Path], image_size: int = 28) -> Characters:
    """Read every character of the given archives or folders, each character once."""
    entries: dict[str, tuple[Path, list]] = {}
    for source in sources:
        for key, files in _png_entries(Path(source)).items():
            # First source wins: a character in two archives has identical files.
            entries.setdefault(key, (Path(source), files))
    names = sorted(entries)
    images = np.zeros((len(names), DRAWINGS, image_size, image_size), dtype=np.uint8)
    for c, name in enumerate(names):
        source, files = entries[name]
        files = sorted(files)
        if len(files) != DRAWINGS:
            raise DataError(f"character {name} in {source} has {len(files)} images, "
                            f"expected {DRAWINGS}")
        for d, (file_name, read) in enumerate(files):
            images[c, d] = decode(read(), image_size, f"{name}/{file_name} in {source}")
    return Characters(torch.from_numpy(images), names)


def split_by_alphabet(characters: Characters, test_alphabets: list[str]):
    """(train, test): the test set holds exactly the characters of ``test_alphabets``."""
    unknown = set(test_alphabets) - set(characters.alphabets)
    if unknown:
        raise ValueError(f"unknown alphabets {sorted(unknown)}; have {characters.alphabets}")
    test = [i for i, n in enumerate(characters.names) if n.split("/")[0] in test_alphabets]
    test_set = set(test)
    train = [i for i in range(len(characters.names)) if i not in test_set]
    return characters.subset(train), characters.subset(test)


def split_by_character(characters: Characters, num_train: int, rng: np.random.Generator):
    """(train, test) with ``num_train`` random characters for training (the paper: 1200)."""
    if not 0 < num_train < len(characters.names):
        raise ValueError(f"num_train must be in 1..{len(characters.names) - 1}, got {num_train}")
    order = rng.permutation(len(characters.names))
    return (characters.subset(sorted(order[:num_train].tolist())),
            characters.subset(sorted(order[num_train:].tolist())))


def with_mirrors(characters: Characters) -> Characters:
    """Two classes per character: as drawn, and mirrored left to right (names ``@mirror``)."""
    images = torch.cat([characters.images, torch.flip(characters.images, dims=(3,))])
    return Characters(images, characters.names + [f"{n}@mirror" for n in characters.names])


def with_rotations(characters: Characters) -> Characters:
    """Four classes per character: rotated by 0, 90, 180 and 270 degrees (the paper)."""
    images = torch.cat([torch.rot90(characters.images, k, dims=(2, 3)) for k in range(4)])
    names = [f"{n}@rot{90 * k}" for k in range(4) for n in characters.names]
    return Characters(images, names)
