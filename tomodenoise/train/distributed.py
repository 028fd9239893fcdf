"""Devices and ``torch.distributed``: which device to train on, this process's rank and the
world size (rank 0 of 1 without a process group), and the network inside a
``DistributedDataParallel`` wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Speedups", "agree", "dist_info", "resolve_device", "speedups", "unwrap"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available")
    return dev


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass(frozen=True)
class Speedups:
    """What the device allows: bf16 autocast (``autocast``: the dtype, or None) and channels-last."""

    autocast: torch.dtype | None = None
    channels_last: bool = False


def speedups(device: torch.device, precision: str = "auto") -> Speedups:
    """bf16 autocast and channels-last memory format where they help: on CUDA GPUs with bf16
    (``precision="auto"``); ``"bf16"`` forces autocast (also on CPU), ``"fp32"`` never."""
    cuda = device.type == "cuda"
    if precision == "bf16":
        dtype = torch.bfloat16
    elif precision == "auto" and cuda and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    else:
        dtype = None
    return Speedups(autocast=dtype, channels_last=cuda)


def agree(flag: bool, value: float, device: torch.device) -> tuple[bool, float]:
    """Rank 0's ``(flag, value)`` on every rank (a broadcast): decisions taken on one clock."""
    t = torch.tensor([float(flag), float(value)], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, 0)
    return bool(t[0]), float(t[1])
