"""Reconstruct each of the K interlaced angle splits of a sinogram on its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tomodenoise.splits import split_sinogram

from .algorithms import fbp, sirt
from .checks import as_sinogram_stack

__all__ = ["reconstruct_splits"]


def reconstruct_splits(
    sinogram: np.ndarray,
    angles: np.ndarray,
    k: int,
    *,
    method: str | Callable[..., np.ndarray] = "fbp",
    **kw,
) -> np.ndarray:
    """Reconstruct each of the ``k`` interlaced angle splits on its own.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` (or ``(angle, det)``) line integrals.
    angles : numpy.ndarray
        ``(angle,)`` angles in radians.
    k : int
        Number of splits (split ``j`` = angles ``j, j + k, ...``).
    method : {"fbp", "sirt"} or callable
        Reconstruction per split; a callable is called as ``method(sino_j, angles_j, **kw)``.
    **kw
        Passed to the method (``center``, ``n_pixels``, ``filter``, ``use_gpu``, ...).

    Returns
    -------
    numpy.ndarray
        ``(split, z, y, x)`` float32. With :func:`fbp` and ``n_angles`` a multiple of
        ``k``, ``result.mean(axis=0)`` equals ``fbp(sinogram, angles, **kw)``.
    """
    funcs: dict[str, Callable[..., np.ndarray]] = {"fbp": fbp, "sirt": sirt}
    if callable(method):
        func = method
    elif method in funcs:
        func = funcs[method]
    else:
        raise ValueError(f"method must be 'fbp', 'sirt' or a callable, got {method!r}")
    sino3, ang = as_sinogram_stack(sinogram, angles)
    recs: Sequence[np.ndarray] = [func(s, a, **kw) for s, a in split_sinogram(sino3, ang, k)]
    return np.stack([np.asarray(r, dtype=np.float32) for r in recs], axis=0)
