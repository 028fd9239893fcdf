"""``torch.distributed`` and the device: this process's rank and the world size (rank 0 of 1
without a process group), the network inside a ``DistributedDataParallel`` wrapper, what the
device allows (bf16, channels-last) and rank 0's decisions on every rank. Which device a
setting names is :func:`tomodenoise.device.resolve_device`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tomodenoise.device import resolve_precision

__all__ = ["Speedups", "agree", "dist_info", "from_rank0", "speedups", "summed", "unwrap"]


def dist_info() -> tuple[int, int]:
    """``(rank, world size)``: ``(0, 1)`` without a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (``model`` itself when not wrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass(frozen=True)
class Speedups:
    """What the device allows: bf16 autocast (``autocast``: the dtype, or None) and channels-last."""

    autocast: torch.dtype | None = None
    channels_last: bool = False


def speedups(device: torch.device, precision: str = "auto") -> Speedups:
    """bf16 autocast and channels-last memory format where they help: on CUDA GPUs with bf16
    (``precision="auto"``); ``"bf16"`` forces autocast (also on CPU), ``"fp32"`` never."""
    bf16 = resolve_precision(precision, device) == "bf16"  # the rule inference uses too
    return Speedups(autocast=torch.bfloat16 if bf16 else None, channels_last=device.type == "cuda")


def agree(flag: bool, value: float, device: torch.device) -> tuple[bool, float]:
    """Rank 0's ``(flag, value)`` on every rank (a broadcast): decisions taken on one clock."""
    f, v = from_rank0([float(flag), value], device)
    return bool(f), v


def from_rank0(values: Sequence[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank (one float64 broadcast)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, 0)
    return [float(v) for v in t]


def summed(values: Sequence[float], device: torch.device) -> list[float]:
    """Each of ``values`` summed over the ranks (one float64 all-reduce)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return [float(v) for v in t]
