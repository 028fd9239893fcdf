"""Which torch device a ``train.device`` or ``inference.device`` setting names: one rule for
training, the DDP ranks, inference and the benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a device is resolved, not with this module
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device that ``device`` names.

    ``"auto"``: CUDA when PyTorch sees a GPU, else the CPU. ``"cpu"``, ``"cuda"``, ``"cuda:1"``
    (or a ``torch.device``): that device. A CUDA device on a machine without CUDA, or without
    that GPU, is a :class:`RuntimeError` that says so, never a quiet fall-back to the CPU: the
    run would be many times slower and its ``auto`` settings (the recipe, the default time
    budget) would change with it. ``"auto"`` is the setting that takes whatever is there.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} requested but no CUDA GPU is available "
                               "(set the device to 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} "
                               "CUDA GPU(s) are visible")
    return dev
