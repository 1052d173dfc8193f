"""Data-parallel training under torchrun: the process group, which process writes, and how rank 0's
decisions (the run folder, a checkpoint, an error) reach the other processes.

    torchrun --nproc_per_node=2 -m mnistlab train --distributed --model cnn

Every process trains on its shard of each global batch; gradients are averaged by
DistributedDataParallel, so the run matches a single process with the same global batch. Only
rank 0 reads or writes the run folder, so a multi-node run needs no shared file system.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from mnistlab.errors import InvalidArgument, PeerFailed, TrainingInterrupted

T = TypeVar("T")
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "run it under torchrun, e.g. torchrun --nproc_per_node=2 -m mnistlab train --distributed --model cnn"


@dataclass(frozen=True)
class Processes:
    """Where this process stands: rank 0 of 1 when training is not distributed."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None  # gloo (CPU) or nccl (CUDA); None: not distributed

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.backend is not None


SINGLE = Processes()


def start(device: str) -> Processes:
    """Join the process group torchrun set up: nccl when training on CUDA, gloo otherwise."""
    import torch
    import torch.distributed as torch_dist

    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise InvalidArgument(f"--distributed found no torchrun environment ({', '.join(missing)} unset); {LAUNCH_HINT}")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    if cuda:
        gpus = torch.cuda.device_count()
        if local_world > gpus:  # two processes on one GPU: NCCL refuses, and the error would reach one rank only
            raise InvalidArgument(f"--distributed on CUDA takes one GPU per process: {local_world} processes on this machine, "
                                  f"{gpus} GPU{'s' if gpus != 1 else ''}; start at most {gpus} (torchrun --nproc_per_node={gpus}) "
                                  "or train on the CPU with --device cpu")
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return Processes(rank, world, local_rank, local_world, backend)


def stop(procs: Processes) -> None:
    import torch.distributed as torch_dist

    if procs.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def on_main(procs: Processes, work: Callable[[], T], share: Callable[[T], object] | None = None):
    """Run `work` on rank 0 only and hand its result to every process; with `share`, rank 0 keeps the result and
    the others get `share(result)` (plain data where the result itself cannot travel, such as a locked folder).

    An error on rank 0 is raised on every process (the others as a MnistlabError with rank 0's
    message), so no process is left waiting in a collective call for one that gave up.
    """
    if not procs.active:
        return work()
    import torch.distributed as torch_dist

    box: list = [None]
    failure: BaseException | None = None
    result = None
    if procs.main:
        try:
            result = work()
            box[0] = ("ok", share(result) if share else result)
        except BaseException as exc:  # noqa: BLE001 - passed on, then re-raised below
            failure = exc
            kind = "interrupt" if isinstance(exc, (KeyboardInterrupt, TrainingInterrupted)) else "error"
            box[0] = (kind, str(exc) or type(exc).__name__)
    torch_dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    kind, value = box[0]
    if kind == "ok":
        return result if procs.main and share else value
    if kind == "interrupt":
        raise TrainingInterrupted(f"rank 0 stopped: {value}")
    raise PeerFailed(f"rank 0 failed: {value}")


def all_sum(procs: Processes, *values: float) -> list[float]:
    """The sums of scalars over all processes (epoch loss, correct and seen counts)."""
    if not procs.active:
        return list(values)
    import torch
    import torch.distributed as torch_dist

    device = torch.device("cuda", procs.local_rank) if procs.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return t.tolist()


def check_batch(procs: Processes, batch_size: int) -> int:
    """Images per process per step: the global batch split evenly, or a one-line error."""
    if batch_size % procs.world:
        lower, upper = batch_size - batch_size % procs.world, batch_size - batch_size % procs.world + procs.world
        raise InvalidArgument(f"batch size {batch_size} does not divide among {procs.world} processes; "
                              f"use a multiple of {procs.world} such as {lower or upper} or {upper}")
    return batch_size // procs.world
