"""Data-parallel training under ``torchrun`` (PyTorch DDP); a no-op in a single process.

Every rank draws the same global batch from the step's seeded generator and keeps its
own slice, gradients are averaged across ranks, so N processes follow the same loss
curve as one process on the whole batch (within float noise). Rank 0 writes files.

On CUDA each rank trains on its own GPU, ``cuda:{LOCAL_RANK}``, and the ranks talk over
nccl; on the CPU over gloo.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")    # where this rank trains

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This rank's share of a global batch."""
        return items[self.rank::self.world]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP-wrapped module when running on several processes."""
        if self.world == 1 or not any(p.requires_grad for p in module.parameters()):
            return module
        if self.device.type == "cuda":
            return torch.nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index],
                                                             output_device=self.device.index)
        return torch.nn.parallel.DistributedDataParallel(module)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of a scalar across ranks (for logging)."""
        if self.world == 1:
            return value.detach()
        out = value.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    def barrier(self) -> None:
        if self.world > 1 and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        elif self.world > 1:
            dist.barrier()


def rank_device(device: torch.device | str | None, world: int | None = None) -> torch.device:
    """This process's training device: ``device`` alone, or under torchrun with several
    processes on CUDA, ``cuda:{LOCAL_RANK}`` (one GPU per rank)."""
    device = torch.device("cpu" if device is None else device)
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def setup(device: torch.device | str | None = None) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); the returned
    ``Dist.device`` is where this rank trains (``rank_device``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = rank_device(device, world)
    if world == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)       # nccl's collectives and barriers use the current device
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # Long single-rank stages (the appearance) keep the others waiting at a barrier.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=24))
    return Dist(dist.get_rank(), dist.get_world_size(), device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
