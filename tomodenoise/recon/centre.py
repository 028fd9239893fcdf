"""Re-centring a sinogram on its rotation axis (ASTRA's CPU FBP knows only a centred axis)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["CentrePlan", "centre_plan", "centre_slice"]

CentrePlan = tuple[int, int, float]


def centre_plan(width: int, center: float | None) -> CentrePlan:
    """Padding ``(left, right)`` and residual sub-pixel shift that centre the axis.

    After padding, column ``center + left`` is the axis; shifting the data by
    ``frac = (W' - 1) / 2 - (center + left)`` columns (``|frac| <= 0.25``) puts it at
    the middle ``(W' - 1) / 2`` of the padded detector of width ``W'``.
    """
    if center is None:
        return 0, 0, 0.0
    c = float(center)
    if not math.isfinite(c):
        raise ValueError(f"center must be finite, got {center!r}")
    if not (-0.5 <= c <= width - 0.5):
        raise ValueError(f"center {c} (0-based detector column) lies outside the detector of width {width}")
    twice = int(round(2.0 * c))
    d2 = twice - (width - 1)
    left, right = (0, d2) if d2 >= 0 else (-d2, 0)
    frac = twice / 2.0 - c
    if abs(frac) < 1e-9:
        frac = 0.0
    return left, right, frac


def centre_slice(sino2d: np.ndarray, plan: CentrePlan) -> np.ndarray:
    """One ``(angle, det)`` slice padded and shifted by ``plan``, float32 C-contiguous."""
    left, right, frac = plan
    out = sino2d
    if left or right:
        out = np.pad(out, ((0, 0), (left, right)), mode="edge")
    if frac:
        out = ndimage.shift(out.astype(np.float64), (0.0, frac), order=3, mode="nearest")
    return np.ascontiguousarray(out, dtype=np.float32)
