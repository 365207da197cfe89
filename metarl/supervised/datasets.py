"""The class sets of a few-shot config: find the data, read it, split it, augment it.

Everything that can be wrong with the data (missing folder, missing archive,
wrong layout, unreadable image, too few classes for the tasks) is a one-line
``DataError`` or ``ConfigError`` naming the path or key, raised here, before
a run directory is made or training starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metarl.config import ConfigError
from metarl.supervised.images import DataError, ImageClasses
from metarl.supervised.miniimagenet import read_miniimagenet
from metarl.supervised.omniglot import (
    read_omniglot,
    split_by_alphabet,
    split_by_character,
    with_mirrors,
    with_rotations,
)

# The source checkout of an editable install (`pip install -e .`, the README's).
# Installed elsewhere it is a folder without data, and only the first candidate of
# resolve_data_dir counts; the error names both.
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: str | Path) -> Path:
    """An existing folder: absolute, or relative to the current folder, else to the repository.

    Why the fallback: shipped configs say ``../shared/data/omniglot``, which is
    right from the repository root; a run started elsewhere still finds it.
    """
    path = Path(data_dir).expanduser()
    candidates = [path] if path.is_absolute() else [path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = " or ".join(str(c.resolve()) for c in candidates)
    raise DataError(f"data_dir not found: {tried} (set data_dir in the config or "
                    "--set data_dir=...; Omniglot: `metarl data omniglot --to DIR`)")


def omniglot_sources(root: Path, archives: list[str]) -> list[Path]:
    """``root/<name>.zip`` or the extracted ``root/<name>/`` folder of every archive."""
    sources = []
    for name in archives:
        for candidate in (root / name, root / f"{name}.zip", root / name.removesuffix(".zip")):
            if candidate.exists():
                sources.append(candidate)
                break
        else:
            raise DataError(f"Omniglot archive {name} not found in {root} (expected "
                            f"{name.removesuffix('.zip')}.zip or its extracted folder; get it "
                            f"with `metarl data omniglot --to {root}`)")
    return sources


def omniglot_splits(config) -> tuple[ImageClasses, ImageClasses]:
    """(train, test) character sets, rotated into 4 classes each if configured; the
    training characters also mirrored first if configured (8 classes each then)."""
    arch = config.architecture()
    root = resolve_data_dir(config.data_dir)
    characters = read_omniglot(omniglot_sources(root, config.archives), arch["image_size"])
    # The split has its own generator: the same characters for every run of a seed.
    rng = np.random.default_rng([config.seed, 1])
    if config.test_alphabets:
        unknown = sorted(set(config.test_alphabets) - set(characters.alphabets))
        if unknown:
            raise ConfigError(f"config key 'test_alphabets': {unknown} not in the data "
                              f"(alphabets: {', '.join(characters.alphabets)})")
        train, test = split_by_alphabet(characters, config.test_alphabets)
        if config.train_characters < len(train.names):  # fewer: how accuracy grows with data
            train = split_by_character(train, config.train_characters, rng)[0]
    else:
        if not 0 < config.train_characters < len(characters.names):
            raise ConfigError(f"config key 'train_characters': must be below the "
                              f"{len(characters.names)} characters read from {root}, "
                              f"got {config.train_characters}")
        train, test = split_by_character(characters, config.train_characters, rng)
    if config.mirror_training_characters:
        train = with_mirrors(train)
    if arch["rotations"]:
        train, test = with_rotations(train), with_rotations(test)
    return train, test


def load_classes(config, split: str) -> ImageClasses:
    """The classes of ``split`` ("train", or "eval": held-out) checked against the tasks."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if config.dataset == "omniglot":
        train, test = omniglot_splits(config)
        classes = train if split == "train" else test
    else:
        csv_split = "train" if split == "train" else config.eval_split
        size = config.architecture()["image_size"]
        classes = read_miniimagenet(resolve_data_dir(config.data_dir), csv_split, size)
    check_tasks(classes, config, split)
    return classes


def check_tasks(classes: ImageClasses, config, split: str) -> None:
    """N-way tasks with K + Q examples per class must fit in the set."""
    if config.ways > classes.num_classes:
        raise ConfigError(f"config key 'ways': {config.ways}-way tasks need {config.ways} "
                          f"classes, the {split} set has {classes.num_classes}")
    if config.shots + config.query_shots > classes.per_class:
        raise ConfigError(f"config keys 'shots' + 'query_shots' = "
                          f"{config.shots + config.query_shots} exceed the "
                          f"{classes.per_class} examples per class of the {split} set")
