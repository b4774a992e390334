"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

charrnn never starts processes itself. Under ``torchrun`` the environment names this process's
rank and the world size; ``Distributed.from_environment`` joins the process group (NCCL on CUDA,
Gloo on the CPU) and everything else asks the returned object. A plain ``charrnn train`` gets a
world of one, where every collective below is a no-op.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Who this process is among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the process group torchrun set up, or return a world of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(
            rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
        )

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a node: cuda:<local rank>."""
        if device.type == "cuda" and self.enabled:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def leave(self) -> None:
        """Leave the process group at the end of the run (torchrun expects every process to)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all processes (every process gets the result)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        settled(lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM), tensor)
        return tensor.tolist()

    def max(self, value: int, device: torch.device) -> int:
        """The largest ``value`` over all processes (e.g. a signal number, 0 for none)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=device)
        settled(lambda: dist.all_reduce(tensor, op=dist.ReduceOp.MAX), tensor)
        return int(tensor.item())

    def gather(self, tensor: torch.Tensor, dim: int, device: torch.device) -> torch.Tensor:
        """Every process's ``tensor`` (same shape everywhere) concatenated along ``dim`` in rank
        order, returned on the CPU. The copy to ``device`` is what NCCL needs."""
        if not self.enabled:
            return tensor.cpu()
        tensor = tensor.to(device).contiguous()
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        settled(lambda: dist.all_gather(parts, tensor), tensor, *parts)
        return torch.cat(parts, dim=dim).cpu()


def settled(collective: Callable[[], object], *tensors: torch.Tensor, seconds: float = 1.0) -> None:
    """Run ``collective`` on ``tensors``; return once Gloo holds none of them (or after ``seconds``).

    A Gloo collective returns when its result is ready, but its worker thread lets go of the
    tensors a moment later, and letting go of a tensor Python knows needs the GIL. When that
    moment falls after the interpreter has begun to exit (the last collective of a run), the
    worker cannot have the GIL and the process aborts: "terminate called without an active
    exception". Waiting here, microseconds in practice, keeps every release inside the run.
    NCCL is left alone: its watchdog lets go on its own schedule and is joined at shutdown.
    """
    held_before = [tensor._use_count() for tensor in tensors]
    collective()
    if dist.get_backend() != "gloo":
        return
    deadline = time.monotonic() + seconds
    pairs = list(zip(tensors, held_before, strict=True))
    while time.monotonic() < deadline and any(tensor._use_count() > held for tensor, held in pairs):
        time.sleep(1e-5)
