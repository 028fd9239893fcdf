"""ASTRA itself (imported lazily) and whether its CUDA algorithms may run here."""

from __future__ import annotations

from typing import Literal

__all__ = ["UseGPU", "astra_module", "gpu_available", "use_cuda"]

UseGPU = Literal["auto", "yes", "no"] | bool


def astra_module():
    """The ``astra`` module, imported lazily: importing tomodenoise must not require ASTRA."""
    import astra

    return astra


def gpu_available() -> bool:
    """Whether ASTRA can run CUDA algorithms here.

    Returns
    -------
    bool
        ``astra.use_cuda()``; False when ASTRA is missing or the check fails.
    """
    try:
        return bool(astra_module().use_cuda())
    except Exception:  # pragma: no cover - ASTRA missing or broken
        return False


def use_cuda(use_gpu: UseGPU) -> bool:
    """Resolve the ``use_gpu`` argument; never True unless ``astra.use_cuda()``."""
    if use_gpu is True:
        mode = "yes"
    elif use_gpu is False:
        mode = "no"
    elif isinstance(use_gpu, str) and use_gpu.lower() in ("auto", "yes", "no"):
        mode = use_gpu.lower()
    else:
        raise ValueError(f"use_gpu must be 'auto', 'yes', 'no' (or a bool), got {use_gpu!r}")
    if mode == "no":
        return False
    available = gpu_available()
    if mode == "yes" and not available:
        raise RuntimeError("use_gpu='yes' but ASTRA reports no usable CUDA GPU (astra.use_cuda() is False)")
    return available
