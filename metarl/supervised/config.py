"""Configuration of supervised meta-learning runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metarl.schema import ConfigError, keep_checkpoint_spec, spec, time_limit_spec

Method = Literal["maml", "fomaml", "metasgd", "anil", "reptile", "tamaml"]
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
    keep_checkpoint_every: int | None = keep_checkpoint_spec()
    log_every: int = spec(100, low=1)
    time_limit_minutes: float | None = time_limit_spec()

    def validate(self) -> None:
        for key in ("amplitude_range", "phase_range", "input_range"):
            value = getattr(self, key)
            if len(value) != 2 or value[0] > value[1]:
                raise ConfigError(f"config key '{key}': expected [low, high] with low <= high, "
                                  f"got {value!r}")


Dataset = Literal["omniglot", "miniimagenet"]
# The MAML paper's network and image size per data set (section 5.2 and its code).
DATASET_DEFAULTS = {"omniglot": {"image_size": 28, "filters": 64, "pool": False},
                    "miniimagenet": {"image_size": 84, "filters": 32, "pool": True}}


@dataclass
class FewshotConfig:
    """N-way K-shot image classification (MAML paper, section 5.2).

    Defaults are the paper's Omniglot 5-way 1-shot settings. ``image_size``,
    ``filters`` and ``pool`` left at null take the paper's value for the data
    set (Omniglot 28 px, 64 strided filters; MiniImageNet 84 px, 32 filters
    with max-pooling): see ``architecture()``.
    """

    kind: Literal["fewshot"] = "fewshot"
    method: Method = "maml"
    dataset: Dataset = "omniglot"
    data_dir: str = spec("../shared/data/omniglot",
                         doc="folder of the data; relative paths are tried from the current "
                         "folder, then from the repository root")
    archives: list[str] = spec(["images_background", "images_evaluation"],
                               doc="Omniglot: archives (name.zip or extracted folder) to read")
    test_alphabets: list[str] = spec([], doc="Omniglot: hold out these alphabets; empty: hold "
                                     "out the characters not drawn by train_characters")
    train_characters: int = spec(1200, low=1, doc="Omniglot: random characters for training "
                                 "(the paper: 1200); with test_alphabets, drawn from the "
                                 "other alphabets' characters, all of them where fewer")
    rotations: bool | None = spec(None, doc="Omniglot: 4 classes per character rotated by "
                                  "multiples of 90 degrees (null: yes for Omniglot)")
    mirror_training_characters: bool = spec(False, doc="Omniglot: each training character "
                                            "also mirrored left to right, a class of its own "
                                            "(twice the training classes; held-out ones as drawn)")
    augment_rotation: float = spec(0.0, low=0, high=180, doc="training images turned by up "
                                   "to this many degrees either way, each at random (0: off)")
    augment_shift: float = spec(0.0, low=0, doc="training images moved by up to this many "
                                "pixels along each axis, each at random (0: off)")
    augment_scale: float = spec(0.0, low=0, high=0.9, doc="training images "
                                "scaled by a factor in [1 - s, 1 + s], each at random (0: off)")
    eval_split: Literal["test", "val"] = spec("test", doc="MiniImageNet: csv split for evaluate")
    image_size: int | None = spec(None, low=4)
    filters: int | None = spec(None, low=1)
    pool: bool | None = None
    seed: int = spec(0, low=0)
    device: Device = "auto"
    threads: int = spec(1, low=1, doc="torch intra-op threads")
    iterations: int = spec(60000, low=1)
    meta_batch_size: int = spec(32, low=1)
    ways: int = spec(5, low=2, doc="classes per task (N)")
    shots: int = spec(1, low=1, doc="support images per class (K)")
    query_shots: int = spec(1, low=1, doc="query images per class for the outer loss")
    inner_lr: float = spec(0.4, low=0, low_open=True)
    inner_steps: int = spec(1, low=1, doc="inner steps in meta-training")
    eval_inner_steps: int = spec(3, low=0, doc="inner steps at evaluation (default of evaluate)")
    outer_lr: float = spec(0.001, low=0, low_open=True)
    grad_clip: float | None = spec(None, low=0, low_open=True)
    grad_checkpointing: bool = spec(False, doc="recompute each second-order inner step in the "
                                    "backward pass: memory of one step, about 1.4x the time")
    adapt: Literal["grouped", "vmap", "loop"] = spec(
        "grouped", doc="tasks of a meta-batch: one grouped convolution per layer with fast "
        "second derivatives (measured fastest), torch.func.vmap, or a Python loop")
    # MAML++ (Antoniou et al. 2019), each on its own; with method maml: metarl.meta.maml_plus_plus
    multi_step_loss_iterations: int = spec(0, low=0, doc="MAML++: query loss after every inner "
                                           "step, annealed to the last over this many "
                                           "iterations (0: off)")
    per_step_batch_norm: bool = spec(False, doc="MAML++: batch-norm weights and biases per "
                                     "inner step, meta-learned, not adapted")
    learned_step_rates: bool = spec(False, doc="MAML++ (LSLR): a learned inner rate per "
                                    "parameter tensor and step")
    first_order_iterations: int = spec(0, low=0, doc="MAML++: first order for this many "
                                       "iterations, then second order")
    outer_lr_schedule: Literal["constant", "cosine"] = spec(
        "constant", doc="cosine: anneal outer_lr to min_outer_lr over the iterations (MAML++)")
    min_outer_lr: float = spec(1e-5, low=0)
    checkpoint_every: int = spec(1000, low=1)
    keep_checkpoint_every: int | None = keep_checkpoint_spec()
    log_every: int = spec(100, low=1)
    time_limit_minutes: float | None = time_limit_spec()

    def augments(self) -> bool:
        """Whether training images get random affine distortions."""
        return bool(self.augment_rotation or self.augment_shift or self.augment_scale)

    def maml_plus_plus(self) -> bool:
        """Whether any MAML++ option that changes the meta-objective is on."""
        return bool(self.multi_step_loss_iterations or self.per_step_batch_norm
                    or self.learned_step_rates or self.first_order_iterations)

    def validate(self) -> None:
        if self.maml_plus_plus() and self.method != "maml":
            raise ConfigError("config keys multi_step_loss_iterations, per_step_batch_norm, "
                              "learned_step_rates, first_order_iterations are MAML++ options "
                              f"for method maml, got method {self.method!r}")
        if self.maml_plus_plus() and self.grad_checkpointing:
            raise ConfigError("config key 'grad_checkpointing' is not implemented with the "
                              "MAML++ options")
        if self.dataset == "miniimagenet" and self.rotations:
            raise ConfigError("config key 'rotations': the rotation augmentation is for Omniglot; "
                              "use null or false with dataset: miniimagenet")
        if self.dataset == "miniimagenet" and self.mirror_training_characters:
            raise ConfigError("config key 'mirror_training_characters' is for Omniglot; use "
                              "false with dataset: miniimagenet")
        if not self.archives and self.dataset == "omniglot":
            raise ConfigError("config key 'archives': name at least one Omniglot archive")

    def architecture(self) -> dict:
        """image_size, filters, pool, rotations with the data set's defaults filled in."""
        out = {k: v if getattr(self, k) is None else getattr(self, k)
               for k, v in DATASET_DEFAULTS[self.dataset].items()}
        out["rotations"] = (self.dataset == "omniglot") if self.rotations is None \
            else self.rotations
        return out
