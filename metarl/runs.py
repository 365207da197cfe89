"""A run directory: resolved config, TensorBoard events, checkpoint.

Layout of ``RUN_DIR``::

    config.yaml       the resolved configuration (what was actually run)
    checkpoint.pt     the latest checkpoint (atomic)
    checkpoint-N.pt   kept snapshots, every ``keep_checkpoint_every`` iterations
    best.pt           the best iterate so far, where the training loop keeps one
    events.out.tfevents.*   TensorBoard scalars, config text and hyper-parameters
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from metarl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from metarl.config import ConfigError, load_config, save_config, to_dict
from metarl.distributed import local_device

# Keys that may change when a run is resumed: they do not change the computation.
# Bookkeeping, and implementation choices that compute the same (fisher_backend, adapt).
RESUMABLE_KEYS = {"iterations", "checkpoint_every", "keep_checkpoint_every", "log_every",
                  "device", "threads", "time_limit_minutes", "eval_episodes", "eval_samples",
                  "fisher_backend", "adapt"}


def resolve_device(name: str) -> torch.device:
    """``auto`` takes a GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device': 'cuda' requested but no GPU is available; "
                          "use 'auto' or 'cpu'")
    return torch.device(name)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the kernel.

    Why: torch's CPU tensors come straight from malloc, and glibc maps every block
    above 128 KiB (rising to 32 MiB at most) fresh from the kernel and unmaps it
    on free, so each large temporary of a meta-iteration is paid for again in page
    faults: 13-17 s of system time per 10 navigation iterations were measured.
    Blocks up to 32 MiB (glibc's largest setting) now come from the heap, and up
    to 1 GiB of free heap stays mapped: the process's resident memory no longer
    shrinks after a peak. Larger tensors are still mapped each time (the Fisher
    products reuse their own buffers). Returns False where it does not apply
    (not Linux with glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all([mallopt(_M_MMAP_THRESHOLD, 32 * 2**20), mallopt(_M_TRIM_THRESHOLD, 2**30),
                mallopt(_M_TOP_PAD, 64 * 2**20)])


def setup_torch(config) -> torch.device:
    """Apply the run's thread count, keep freed memory mapped, pick the device.

    Why threads default to 1: the nets are small, and on a busy 2-core machine
    OpenMP's spinning threads make tiny ops up to 100x slower.
    """
    torch.set_num_threads(config.threads)
    keep_freed_memory()
    return local_device(resolve_device(config.device))


def load_run_config(run_dir: str | Path) -> Any:
    """The typed config of an existing run; a clear error if ``run_dir`` is not a run."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a metarl run directory (no config.yaml)")
    return load_config(path)


def check_resumable(saved: dict[str, Any], current: Any, run_dir: Path) -> None:
    """The saved config dict of a checkpoint against the ``current`` config object.

    A key the saved config lacks was added to metarl after the run was written: the
    run had that key's default behaviour, so it compares as the default.
    """
    saved = {**to_dict(type(current)()), **saved}
    current = to_dict(current)
    changed = [k for k in sorted(set(saved) | set(current))
               if k not in RESUMABLE_KEYS and saved.get(k) != current.get(k)]
    if changed:
        k = changed[0]
        raise CheckpointError(
            f"cannot resume {run_dir}: config key '{k}' was {saved.get(k)!r} in the run, "
            f"now {current.get(k)!r} (only {', '.join(sorted(RESUMABLE_KEYS))} may change)")


class Interrupted(Exception):
    """Training stopped on Ctrl-C after a finished iteration, whose checkpoint is saved."""

    def __init__(self, run_dir: Path, iteration: int):
        super().__init__(f"stopped at iteration {iteration}; resume with `metarl train "
                         f"--resume --run-dir {run_dir}`")


class StopOnInterrupt:
    """Within it, a first Ctrl-C only asks the training loop to stop after the current
    iteration (``requested``): its checkpoint is then written as usual. A second
    Ctrl-C raises ``KeyboardInterrupt`` at once; checkpoints on disk are only ever
    replaced atomically, so the last one stays whole."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame) -> None:
        self.requested = True
        # A process started in the background (`cmd &`, nohup) inherits SIGINT ignored;
        # restoring that would swallow the second Ctrl-C, so it raises in every case.
        second = self._previous if callable(self._previous) else signal.default_int_handler
        signal.signal(signal.SIGINT, second)
        print("metarl: stopping after this iteration (Ctrl-C again to stop at once)",
              file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class TrainingLoop:
    """The bookkeeping every trainer shares, so that each loop reads as its algorithm.

    Iterating yields the iterations from the run's start to ``config.iterations``
    under a progress bar. A first Ctrl-C (``StopOnInterrupt``) or the config's
    ``time_limit_minutes`` stops after the current iteration, every process of a
    sharded run at the same one. The trainer ends each iteration with
    ``end(done, save)``, which calls ``save(done)`` every ``checkpoint_every``, at
    the last iteration and when stopping; ``finish`` closes the run and raises
    ``Interrupted`` after a Ctrl-C::

        with TrainingLoop(run, config, shard, progress, "meta-train") as loop:
            for iteration in loop:
                ...  # one meta-iteration; loop.log_due(iteration + 1) says when to log
                loop.end(iteration + 1, save)
        loop.finish(final_metrics)
    """

    def __init__(self, run: Run, config: Any, shard: Any, progress: bool, desc: str):
        self.run, self.config, self.shard = run, config, shard
        self.done = run.start_iteration
        self.bar = tqdm(range(run.start_iteration, config.iterations),
                        disable=not (progress and shard.is_main),
                        initial=run.start_iteration, total=config.iterations, desc=desc)
        self._interrupt = StopOnInterrupt()
        self._started = time.perf_counter()
        self._stop = False

    def __enter__(self) -> TrainingLoop:
        self._interrupt.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._interrupt.__exit__(*exc)

    def __iter__(self):
        for iteration in self.bar:
            yield iteration
            if self._stop:
                return

    def log_due(self, done: int) -> bool:
        return done % self.config.log_every == 0 or done == self.config.iterations

    def end(self, done: int, save: Callable[[int], None]) -> None:
        """After iteration ``done``: checkpoint if due, decide (all processes alike) to stop."""
        self.done = done
        limit = self.config.time_limit_minutes
        over_time = limit is not None and time.perf_counter() - self._started > 60 * limit
        self._stop = self.shard.sum_floats(over_time or self._interrupt.requested)[0] > 0
        if (done % self.config.checkpoint_every == 0 or done == self.config.iterations
                or self._stop or _keeps(self.config, done)):
            save(done)

    def finish(self, final_metrics: dict[str, float]) -> None:
        self.run.close(final_metrics)
        if self._interrupt.requested:
            raise Interrupted(self.run.dir, self.done)


def _keeps(config: Any, done: int) -> bool:
    """Whether iteration ``done`` gets a kept snapshot ``checkpoint-<done>.pt``."""
    every = getattr(config, "keep_checkpoint_every", None)
    return every is not None and done % every == 0


RUN_FILES = ("config.yaml", "checkpoint.pt", "checkpoint-*.pt", "best.pt",
             "events.out.tfevents.*", "*.pt.*.tmp", "evaluation*.json",
             "evaluation*.csv", "evaluation*.png")


def run_files(run_dir: Path) -> list[str]:
    """Names of the files in ``run_dir`` that a run writes (none if it does not exist)."""
    if not run_dir.is_dir():
        return []
    return sorted({p.name for pattern in RUN_FILES for p in run_dir.glob(pattern)})


class Run:
    """Owns a run directory: checks it, writes the config, logs scalars, saves checkpoints."""

    def __init__(self, run_dir: str | Path, config: Any, resume: bool = False,
                 writes: bool = True):
        """writes=False (ranks other than 0): check and read, never write."""
        self.dir = Path(run_dir)
        self.writes = writes
        self.config = config
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.best_path = self.dir / "best.pt"
        self.start_state: dict[str, Any] | None = None
        if resume:
            if not self.checkpoint_path.exists() and self.best_path.exists():
                raise CheckpointError(
                    f"cannot resume {self.dir}: no checkpoint.pt, only best.pt (the best "
                    "iterate, not the last); copy it to checkpoint.pt to continue from it")
            self.start_state = load_checkpoint(self.checkpoint_path)
            check_resumable(self.start_state["config"], config, self.dir)
        elif writes and (existing := run_files(self.dir)):  # other ranks see rank 0's files
            raise CheckpointError(f"{self.dir} already holds a run ({', '.join(existing[:3])}"
                                  f"{', ...' if len(existing) > 3 else ''}); pass --resume to "
                                  "continue it or choose another --run-dir")
        self._writer = None
        if writes:
            self.dir.mkdir(parents=True, exist_ok=True)
            for stale in self.dir.glob("*.pt.*.tmp"):  # an interrupted checkpoint write
                stale.unlink(missing_ok=True)
            save_config(config, self.dir / "config.yaml")

    @property
    def start_iteration(self) -> int:
        return 0 if self.start_state is None else int(self.start_state["iteration"])

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events logged after the checkpoint we resume from (the
            # checkpoint's own iteration was logged before it was saved: keep it).
            purge = self.start_iteration + 1 if self.start_state is not None else None
            self._writer = SummaryWriter(str(self.dir), purge_step=purge)
            if self.start_state is None:
                text = yaml.safe_dump(to_dict(self.config), sort_keys=False)
                self._writer.add_text("config", "```\n" + text + "\n```", 0)
        return self._writer

    def log(self, iteration: int, scalars: dict[str, float]) -> None:
        if not self.writes:
            return
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, iteration)

    def save(self, state: dict[str, Any], best: bool = False) -> None:
        if not self.writes:
            return
        state = {**state, "config": to_dict(self.config)}
        save_checkpoint(state, self.best_path if best else self.checkpoint_path)
        if not best and _keeps(self.config, state["iteration"]):
            save_checkpoint(state, self.dir / f"checkpoint-{state['iteration']}.pt")

    def close(self, final_metrics: dict[str, float] | None = None) -> None:
        if final_metrics and self.writes:
            hparams = {k: (str(v) if isinstance(v, (list, dict, type(None))) else v)
                       for k, v in to_dict(self.config).items()}
            self.writer.add_hparams(hparams, final_metrics, run_name=".")
        if self._writer is not None:
            self._writer.close()
