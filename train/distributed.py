"""torch.distributed plumbing for multi-GPU / multi-node training (launched by ``torchrun``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; when
``WORLD_SIZE`` > 1 the trainer joins the process group (NCCL on CUDA, gloo on CPU). Everything else in the
trainer asks a :class:`DistContext` instead of calling torch.distributed directly, so single-process runs
need no process group at all.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from hsst.core.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Rank / world size of this process and the collectives the trainer needs.

    Attributes:
        rank: global rank (0 in single-process runs).
        world_size: number of processes.
        local_rank: rank on this node (selects ``cuda:<local_rank>``).
        owns_group: whether this context initialised the process group (and must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files (checkpoints, logs, config)."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> "DistContext":
        """Join the process group described by torchrun's environment variables (if WORLD_SIZE > 1).

        Args:
            device_type: ``cuda`` or ``cpu``: picks the NCCL or gloo backend.
        """
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ConfigError(f"invalid torch.distributed environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
        if world <= 1:
            return cls()
        if dist.is_initialized():
            return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, owns_group=False)
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise ConfigError(f"WORLD_SIZE={world} but {var} is not set; launch multi-process training with "
                                  "torchrun (e.g. torchrun --nproc-per-node 2 -m hsst.train.cli ...)")
        backend = "nccl" if device_type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        logger.info("joined process group: rank %d/%d (local %d), backend %s", rank, world, local, backend)
        return cls(rank=rank, world_size=world, local_rank=local, owns_group=True)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, in rank order."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    def all_gather_object(self, obj: Any) -> List[Any]:
        """Python objects from every rank, in rank order (small state only: sampler / RNG states)."""
        if not self.enabled:
            return [obj]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def average_(self, tensors: List[torch.Tensor]) -> None:
        """In-place mean over ranks (floating tensors); integer tensors take rank 0's value."""
        if not self.enabled:
            return
        floats = [t for t in tensors if t.is_floating_point()]
        ints = [t for t in tensors if not t.is_floating_point()]
        # one collective per dtype group (BatchNorm has ~100 small buffers: one call each would dominate)
        for group, op in ((floats, "mean"), (ints, "rank0")):
            by_dtype: dict = {}
            for t in group:
                by_dtype.setdefault(t.dtype, []).append(t)
            for same in by_dtype.values():
                flat = torch.cat([t.reshape(-1) for t in same])
                if op == "mean":
                    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                    flat.div_(self.world_size)
                else:
                    dist.broadcast(flat, src=0)
                offset = 0
                for t in same:
                    n = t.numel()
                    t.copy_(flat[offset:offset + n].view_as(t))
                    offset += n

    def mean_scalar(self, value: float, device: torch.device) -> float:
        """Mean of a Python float over ranks (for logging the global loss)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False
