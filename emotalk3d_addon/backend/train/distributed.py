"""Data-parallel training under ``torchrun`` (PyTorch DDP); a no-op in a single process.

Every rank draws the same global batch from the step's seeded generator and keeps its
own slice, gradients are averaged across ranks, so N processes follow the same loss
curve as one process on the whole batch (within float noise). Rank 0 writes files.
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
        return torch.nn.parallel.DistributedDataParallel(module)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of a scalar across ranks (for logging)."""
        if self.world == 1:
            return value.detach()
        out = value.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup(device: torch.device | None = None) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        # Long single-rank stages (the appearance) keep the others waiting at a barrier.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=24))
    return Dist(dist.get_rank(), dist.get_world_size())


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
