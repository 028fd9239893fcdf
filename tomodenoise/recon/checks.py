"""Validation of the reconstruction inputs and the FBP filter names."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ASTRA_FILTERS", "CPU_PROJECTORS", "as_sinogram_stack", "check_n_pixels", "check_pixel_size",
           "normalise_filter"]

#: FBP filter names accepted by ASTRA's FBP / FBP_CUDA (``filter=`` argument).
#: Filters from ``"tukey"`` on take a parameter (``filter_d``, ASTRA's ``FilterD``).
ASTRA_FILTERS: tuple[str, ...] = (
    "ram-lak",
    "shepp-logan",
    "cosine",
    "hamming",
    "hann",
    "none",
    "tukey",
    "lanczos",
    "triangular",
    "gaussian",
    "barlett-hann",
    "blackman",
    "nuttall",
    "blackman-harris",
    "blackman-nuttall",
    "flat-top",
    "kaiser",
    "parzen",
)

FILTER_ALIASES = {"ramlak": "ram-lak", "ram_lak": "ram-lak", "shepp_logan": "shepp-logan",
                  "shepplogan": "shepp-logan", "hanning": "hann", "bartlett-hann": "barlett-hann"}

CPU_PROJECTORS = ("linear", "strip", "line")


def as_sinogram_stack(sinogram: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(z, angle, det)`` float32 and ``(angle,)`` float64 angles."""
    sino = np.asarray(sinogram)
    if sino.ndim == 2:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(f"sinogram must be (angle, det) or (z, angle, det), got shape {np.shape(sinogram)}")
    if min(sino.shape) < 1:
        raise ValueError(f"sinogram has an empty axis: shape {sino.shape}")
    ang = as_angles(angles, sino.shape[1], np.shape(sinogram))
    sino = np.asarray(sino, dtype=np.float32)
    if not np.all(np.isfinite(sino)):
        raise ValueError("sinogram contains NaN or inf")
    return sino, ang


def as_angles(angles: np.ndarray, n_angles: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(angle,)`` float64 angles, one per projection of a sinogram of ``shape``."""
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1 or ang.shape[0] != n_angles:
        raise ValueError(
            f"angles must be 1-D with one angle per projection: got {ang.shape} angles for a "
            f"sinogram with {n_angles} angles (shape {shape})"
        )
    if not np.all(np.isfinite(ang)):
        raise ValueError("angles contain NaN or inf")
    return ang


def check_n_pixels(n_pixels: int | None, width: int) -> int:
    if n_pixels is None:
        return int(width)
    if isinstance(n_pixels, bool) or not isinstance(n_pixels, (int, np.integer)) or n_pixels < 1:
        raise ValueError(f"n_pixels must be a positive integer, got {n_pixels!r}")
    return int(n_pixels)


def check_pixel_size(pixel_size: float) -> float:
    ps = float(pixel_size)
    if not (math.isfinite(ps) and ps > 0):
        raise ValueError(f"pixel_size must be a positive finite number, got {pixel_size!r}")
    return ps


def check_iterations(iterations: int) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return int(iterations)


def check_projector(projector: str) -> str:
    if projector not in CPU_PROJECTORS:
        raise ValueError(f"projector must be one of {CPU_PROJECTORS}, got {projector!r}")
    return projector


def normalise_filter(name: str) -> str:
    """The ASTRA name of an FBP filter (aliases accepted); ValueError for an unknown one."""
    if not isinstance(name, str):
        raise ValueError(f"filter must be a string, one of {ASTRA_FILTERS}, got {name!r}")
    key = name.strip().lower()
    key = FILTER_ALIASES.get(key, key)
    if key not in ASTRA_FILTERS:
        raise ValueError(f"unknown FBP filter {name!r}; choose one of {ASTRA_FILTERS}")
    return key
