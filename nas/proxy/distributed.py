"""Distributed training through torch's own machinery: torchrun starts the processes, `torch.distributed`
connects them (gloo on CPUs, NCCL on GPUs) and the trainer wraps the network in DistributedDataParallel.

`init_from_env()` joins the process group torchrun describes in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `current()` says which process this is once it has. The rest are
the few collectives the trainer needs: sums for the metrics, gathering each process's random-generator
states for a checkpoint, a barrier. `launch_local` is what `nas train --nproc N` runs.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from nas.errors import NasError
from nas.model.device import resolve_device

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # device type -> process-group backend
TIMEOUT = datetime.timedelta(minutes=30)  # a rank waiting longer than this on the others gives up


@dataclass(frozen=True)
class Distributed:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the metrics, checkpoints and progress."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str | None = "auto") -> Distributed | None:
    """Join the process group torchrun set up in the environment (None when there is none to join).

    The backend follows the device: NCCL for CUDA (each process on GPU LOCAL_RANK), gloo for the CPU.
    """
    if not launched_by_torchrun():
        return None
    if not dist.is_initialized():
        kind = resolve_device(device).type
        if kind not in BACKENDS:
            raise NasError(f"distributed training runs on {' or '.join(BACKENDS)} devices, not {kind}")
        if kind == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(BACKENDS[kind], timeout=TIMEOUT)
    return current()


def current() -> Distributed | None:
    """This process's rank and world when a process group of more than one process is initialised."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    world = dist.get_world_size()
    return Distributed(rank=dist.get_rank(), world_size=world,
                       local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                       local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world)))


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of `values` over all processes (in place; `values` on the run's device)."""
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_to_main(obj: Any, place: Distributed) -> list[Any] | None:
    """Every process's `obj`, in rank order, on rank 0 (None elsewhere)."""
    gathered = [None] * place.world_size if place.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def barrier() -> None:
    """Wait until every process gets here."""
    dist.barrier()


def launch_local(nproc: int, argv: list[str], threads: int | None = None) -> None:
    """Run `python -m nas ARGV` in `nproc` processes on this machine with torchrun (its standalone mode),
    each with `threads` torch threads (default: the cores shared out); a failed process is a NasError.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise NasError(f"--nproc must be at least 1, got {nproc}")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "nas", *argv]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise NasError(f"training process {rank} of {nproc} failed with exit code {failure.exitcode} "
                       "(its message is above); run the same command again to resume") from None
