"""Optional filters of the data: isolated outliers (zingers) and ring artefacts.

:func:`remove_outliers` replaces pixels that differ too much from their local median in
the projections, and :func:`remove_rings` removes the stripes (detector columns reading
consistently high or low) from sinograms, which would become rings in a reconstruction.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["remove_outliers", "remove_rings"]


def remove_outliers(images: np.ndarray, threshold: float = 0.2, size: int = 3) -> tuple[np.ndarray, int]:
    """Replace isolated outliers (zingers, hot pixels) by the local median.

    A pixel is an outlier when it differs from the median of its ``size x size``
    neighbourhood (in each image) by more than ``threshold`` times that median's magnitude.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, z, det)`` stack (or one ``(z, det)`` image).
    threshold : float
        Relative difference that marks an outlier.
    size : int
        Median filter width (odd).

    Returns
    -------
    filtered : numpy.ndarray
        float32 copy with outliers replaced.
    n_replaced : int
    """
    a = np.asarray(images, dtype=np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    med = ndimage.median_filter(a, size=(1, size, size), mode="nearest")
    scale = np.maximum(np.abs(med), np.finfo(np.float32).tiny)
    bad = np.abs(a - med) > threshold * scale
    out = np.where(bad, med, a).astype(np.float32, copy=False)
    return (out[0] if squeeze else out), int(np.count_nonzero(bad))


def remove_rings(sinogram: np.ndarray, size: int = 15) -> np.ndarray:
    """Suppress ring artefacts: remove each column's deviation from the smoothed mean profile.

    Stripes in a sinogram (a detector column that reads consistently high or low) become
    rings in the reconstruction. The mean over angles of each column, minus its median
    filtered version along the detector, is the stripe; it is subtracted from the column.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` or ``(angle, det)`` line integrals.
    size : int
        Median filter width along the detector (larger than the stripes, smaller than
        the object's features).

    Returns
    -------
    numpy.ndarray
        float32 corrected copy.
    """
    s = np.asarray(sinogram, dtype=np.float32)
    profile = s.mean(axis=-2, keepdims=True)
    smooth = ndimage.median_filter(profile, size=(1,) * (s.ndim - 1) + (size,), mode="nearest")
    return (s - (profile - smooth)).astype(np.float32, copy=False)
