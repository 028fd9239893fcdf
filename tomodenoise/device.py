"""Which torch device a ``train.device`` or ``inference.device`` setting names, and which
precision a ``precision`` setting means on it: one rule for training, the DDP ranks,
inference and the benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a device is resolved, not with this module
    import torch

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device that ``device`` names.

    ``"auto"``: CUDA when PyTorch sees a GPU, else the CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"``
    (or a ``torch.device``): that device. A CUDA device on a machine without CUDA, or without
    that GPU, is a :class:`ValueError` that says so (bad input: a setting this machine cannot
    satisfy), never a quiet fall-back to the CPU: the run would be many times slower and its ``auto`` settings (the recipe, the default time
    budget) would change with it. ``"auto"`` is the setting that takes whatever is there.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but no CUDA GPU is available "
                               "(set the device to 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} "
                               "CUDA GPU(s) are visible")
    return dev


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on a CUDA device that supports bf16, else ``"fp32"``; others as given."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"
