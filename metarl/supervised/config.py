"""Configuration of supervised meta-learning runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.config import ConfigError, spec

Method = Literal["maml", "fomaml", "metasgd", "anil", "reptile"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass
class SinusoidConfig:
    """Sinusoid regression (MAML paper, section 5.1). Defaults are the paper's settings."""

    kind: Literal["sinusoid"] = "sinusoid"
    method: Method = "maml"
    seed: int = spec(0, low=0)
    device: Device = "auto"
    threads: int = spec(1, low=1, doc="torch intra-op threads (small nets: 1 is fastest)")
    iterations: int = spec(70000, low=1)
    meta_batch_size: int = spec(25, low=1)
    shots: int = spec(10, low=1, doc="support points per task (K)")
    query_shots: int = spec(10, low=1, doc="query points per task for the outer loss")
    inner_lr: float = spec(0.01, low=0, low_open=True)
    inner_steps: int = spec(1, low=1)
    outer_lr: float = spec(0.001, low=0, low_open=True)
    grad_clip: float | None = spec(None, low=0, low_open=True)
    hidden_sizes: list[int] = spec([40, 40], low=1)
    activation: Literal["relu", "tanh"] = "relu"
    amplitude_range: list[float] = spec([0.1, 5.0], low=0, low_open=True)
    phase_range: list[float] = spec([0.0, 3.141592653589793])
    input_range: list[float] = spec([-5.0, 5.0])
    checkpoint_every: int = spec(1000, low=1)
    log_every: int = spec(100, low=1)

    def validate(self) -> None:
        for key in ("amplitude_range", "phase_range", "input_range"):
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"config key '{key}': expected [low, high] with low <= high, "
                                  f"got {value!r}")
