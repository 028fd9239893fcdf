"""Flat/dark correction and -log: raw intensities -> transmission -> line integrals.

:func:`flat_dark_correct` normalises the projections by the mean flat and dark fields
(guarding dead pixels where the flat is not brighter than the dark), and :func:`minus_log`
turns transmission into line integrals ``-log(t)``, clamping values at or below zero and
counting them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_dark_correct", "minus_log"]


def _mean_field(a: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=0, dtype=np.float64).astype(np.float32)
    if a.shape != shape:
        raise ValueError(f"{name} must be (n, z, det) or (z, det) with (z, det) = {shape}, got {a.shape}")
    return a


def flat_dark_correct(
    projections: np.ndarray,
    flats: np.ndarray | None,
    darks: np.ndarray | None,
) -> np.ndarray:
    """Flat/dark correction: ``(p - mean dark) / (mean flat - mean dark)``.

    Parameters
    ----------
    projections : numpy.ndarray
        ``(angle, z, det)`` raw intensities.
    flats : numpy.ndarray or None
        ``(n, z, det)`` flat fields (or their ``(z, det)`` mean). None: the projections are
        taken to be normalised already (returned as float32).
    darks : numpy.ndarray or None
        ``(n, z, det)`` dark fields (or their mean); None means zero.

    Returns
    -------
    numpy.ndarray
        ``(angle, z, det)`` float32 transmission. Where the mean flat is not brighter than
        the mean dark (dead pixels) the division is guarded: those pixels get transmission
        1 (zero attenuation) instead of inf/NaN.

    Raises
    ------
    ValueError
        For darks without flats, or fields whose shape does not match.
    """
    p = np.asarray(projections)
    if p.ndim != 3:
        raise ValueError(f"projections must be (angle, z, det), got shape {p.shape}")
    shape = p.shape[1:]
    flat = _mean_field(flats, shape, "flats")
    dark = _mean_field(darks, shape, "darks")
    if flat is None:
        if dark is not None:
            raise ValueError("darks without flats: cannot normalise")
        return np.array(p, dtype=np.float32, copy=True)
    if dark is None:
        dark = np.zeros(shape, dtype=np.float32)
    denom = flat - dark
    good = denom > 0
    inv = np.zeros(shape, dtype=np.float32)
    np.divide(1.0, denom, out=inv, where=good)
    out = np.subtract(p, dark, dtype=np.float32)
    out *= inv
    if not good.all():
        out[:, ~good] = 1.0
    return out


def minus_log(transmission: np.ndarray, min_value: float = 1e-6) -> tuple[np.ndarray, int]:
    """Line integrals ``-log(t)``, with ``t`` clamped from below.

    Parameters
    ----------
    transmission : numpy.ndarray
        Flat/dark-corrected transmission (any shape).
    min_value : float
        Values below it (zero, negative from noise, NaN) are set to it first.

    Returns
    -------
    line_integrals : numpy.ndarray
        float32, same shape.
    n_clamped : int
        How many values were clamped.
    """
    if not min_value > 0:
        raise ValueError(f"min_value must be > 0, got {min_value}")
    t = np.asarray(transmission, dtype=np.float32)
    bad = ~(t >= np.float32(min_value))  # also catches NaN
    n = int(np.count_nonzero(bad))
    out = np.where(bad, np.float32(min_value), t).astype(np.float32, copy=False)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out, n
