"""Meta-batch sharding over processes with ``torch.distributed``.

``metarl train`` launched by ``torchrun --nproc-per-node P`` (one or many nodes)
runs P processes; each takes a contiguous block of the meta-batch's tasks.
What keeps the result independent of the number of processes:

- every process draws the random numbers of the *whole* meta-batch (task
  parameters, env seeds, action noise) from the run's shared streams and
  keeps its block, so task j sees the same randomness on any rank;
- losses, gradients, KLs and Fisher-vector products are per-task means
  weighted by the block's share of the meta-batch and summed over processes
  (``all_reduce``), so every process takes the same step;
- only rank 0 writes the run directory; the streams' state is the same on
  every rank, so a checkpoint resumes with any number of processes.

Collectives run on gloo (CPU) or nccl (GPU). A process that dies makes the
others' next collective fail: they stop with ``DistributedError``; the
checkpoints on disk are only ever replaced atomically.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


class DistributedError(RuntimeError):
    """A collective failed: another process stopped or the network broke."""


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` processes (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def tasks(self, total: int) -> slice:
        """This rank's contiguous block of ``total`` tasks; the first ranks take one more."""
        if total < self.world_size:
            raise ValueError(f"meta_batch_size {total} is smaller than the {self.world_size} "
                             "processes: every process needs at least one task")
        base, extra = divmod(total, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def weight(self, total: int) -> float:
        """Share of the meta-batch on this rank: turns a local mean into a summand."""
        block = self.tasks(total)
        return (block.stop - block.start) / total

    def pooled(self, total: int) -> Callable[[Tensor], Tensor]:
        """Local mean over this rank's tasks -> mean over all ``total`` tasks (every rank
        gets it): weighted by the rank's share and summed. The identity with one process."""
        if self.world_size == 1:
            return lambda tensor: tensor
        weight = self.weight(total)
        return lambda tensor: self.all_reduce(weight * tensor)

    def all_reduce(self, tensor: Tensor) -> Tensor:
        """Sum over processes (a new tensor; the identity with one process)."""
        if self.world_size == 1:
            return tensor
        out = tensor.detach().clone()
        try:
            dist.all_reduce(out)
        except (RuntimeError, dist.DistBackendError) as err:
            raise DistributedError(f"rank {self.rank}: a collective failed, another process "
                                   f"probably stopped ({str(err).splitlines()[0]})") from None
        return out

    def sum_gradients(self, parameters) -> None:
        """Replace every ``.grad`` by its sum over processes (one collective for all)."""
        if self.world_size == 1:
            return
        with_grad = [p for p in parameters if p.grad is not None]
        flat = self.all_reduce(torch.cat([p.grad.flatten() for p in with_grad]))
        for p, g in zip(with_grad, flat.split([p.numel() for p in with_grad])):
            p.grad = g.view_as(p)

    def sum_floats(self, *values: float) -> list[float]:
        """Sum plain numbers over processes, in float64."""
        return self.all_reduce(torch.tensor(values, dtype=torch.float64)).tolist()

    def check_identical(self, params: dict[str, Tensor]) -> None:
        """Raise unless every process holds the same parameters (cheap fingerprint)."""
        if self.world_size == 1:
            return
        flat = torch.cat([p.detach().double().flatten().cpu() for p in params.values()])
        weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64).sin()
        fingerprint = torch.stack([flat.sum(), (flat * weights).sum()])
        total = self.all_reduce(fingerprint) / self.world_size
        if not torch.equal(total, fingerprint):
            raise DistributedError(f"rank {self.rank}: parameters differ between processes")


SINGLE_PROCESS = Shard()


def init_shard(device: torch.device, timeout_minutes: float = 10.0) -> Shard:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    Without those variables (a plain ``metarl train``): a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE_PROCESS
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    shard = Shard(dist.get_rank(), dist.get_world_size())
    if threading.current_thread() is threading.main_thread():
        # torchrun stops the others with SIGTERM when a process dies; one that has not
        # reached a collective yet would otherwise end without a word.
        def stopped(signum, frame):
            raise DistributedError(f"rank {shard.rank}: stopped by the launcher (SIGTERM): "
                                   "another process probably stopped")

        signal.signal(signal.SIGTERM, stopped)
    return shard


def local_device(device: torch.device) -> torch.device:
    """One GPU per process on a node (torchrun's LOCAL_RANK); CPU unchanged."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def close_shard(finished: bool = True) -> None:
    """Leave the process group. A rank that finished waits for the others first: one
    that tore gloo down while a peer was still writing its last checkpoint was seen to
    abort at exit (``terminate called without an active exception``, about 1 run in 10).
    After an error there is no wait, since a peer may be gone."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
