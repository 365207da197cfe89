"""Checkpoints: atomic save, checked load, RNG state capture for exact resume.

A checkpoint is one ``torch.save`` file holding plain state (module and
optimiser state dicts, RNG states, iteration, the resolved config). It is
written to a temporary file in the same directory and renamed over the old
one, so a crash mid-write never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "metarl-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or belongs to a different run."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable "
                              f"({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a metarl checkpoint (expected format {FORMAT})")
    return state


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Everything random in a run: the numpy task generator and torch's global RNG."""
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
