"""Which projection goes to which Noise2Inverse split.

Noise2Inverse splits the projection angles of one scan into ``K`` disjoint,
interlaced subsets: split ``j`` takes the angles ``j, j + K, j + 2K, ...`` (in
acquisition order). Every split then covers the whole angular range with ``K``
times coarser sampling, so the ``K`` reconstructions show the same object with
statistically independent noise.

The angle axis is the second-to-last axis of a sinogram (``(..., angle, det)``,
see ``docs/CONVENTIONS.md``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["split_indices", "split_sinogram"]


def _check_k(n_angles: int, k: int) -> tuple[int, int]:
    if isinstance(n_angles, bool) or not isinstance(n_angles, (int, np.integer)):
        raise TypeError(f"n_angles must be an integer, got {type(n_angles).__name__}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k (the number of splits) must be an integer, got {type(k).__name__}")
    n_angles, k = int(n_angles), int(k)
    if n_angles < 1:
        raise ValueError(f"n_angles must be >= 1, got {n_angles}")
    if k < 2:
        raise ValueError(f"the number of splits k must be >= 2, got k={k}")
    if k > n_angles:
        raise ValueError(
            f"the number of splits k={k} exceeds the number of angles ({n_angles}): "
            "every split needs at least one projection"
        )
    return n_angles, k


def split_indices(n_angles: int, k: int) -> list[np.ndarray]:
    """Angle indices of the ``k`` interlaced splits.

    Parameters
    ----------
    n_angles : int
        Number of projection angles of the scan.
    k : int
        Number of splits, ``2 <= k <= n_angles``.

    Returns
    -------
    list of numpy.ndarray
        ``k`` integer arrays (``int64``); split ``j`` holds ``j, j + k, j + 2k, ...``.
        Together they partition ``range(n_angles)``. When ``n_angles`` is not a
        multiple of ``k`` the first ``n_angles % k`` splits have one angle more.

    Raises
    ------
    ValueError
        If ``k < 2`` or ``k > n_angles`` or ``n_angles < 1``.

    Examples
    --------
    >>> [s.tolist() for s in split_indices(7, 3)]
    [[0, 3, 6], [1, 4], [2, 5]]
    """
    n_angles, k = _check_k(n_angles, k)
    return [np.arange(j, n_angles, k, dtype=np.int64) for j in range(k)]


def split_sinogram(
    sinogram: np.ndarray, angles: np.ndarray, k: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a sinogram into ``k`` interlaced angle splits.

    Parameters
    ----------
    sinogram : numpy.ndarray
        Array ``(..., angle, det)``; any leading axes (e.g. ``z``, ``time``,
        ``channel``) are kept.
    angles : numpy.ndarray
        ``(angle,)`` projection angles in radians, one per sinogram row.
    k : int
        Number of splits, ``2 <= k <= n_angles``.

    Returns
    -------
    list of tuple
        ``k`` pairs ``(sino_j, angles_j)``: ``sino_j`` is ``(..., angle_j, det)``
        (a contiguous copy, same dtype) and ``angles_j`` the matching ``float64``
        angles, split ``j`` holding angles ``j, j + k, j + 2k, ...``.

    Raises
    ------
    ValueError
        If the sinogram has fewer than 2 dimensions, the number of angles does not
        match ``sinogram.shape[-2]``, or ``k`` is out of range.
    """
    sinogram = np.asarray(sinogram)
    angles = np.asarray(angles, dtype=np.float64)
    if sinogram.ndim < 2:
        raise ValueError(f"sinogram must be (..., angle, det), got shape {sinogram.shape}")
    if angles.ndim != 1 or angles.shape[0] != sinogram.shape[-2]:
        raise ValueError(
            f"angles must be 1-D with one angle per sinogram row: got {angles.shape} angles "
            f"for a sinogram of shape {sinogram.shape} (angle axis = -2)"
        )
    out = []
    for idx in split_indices(sinogram.shape[-2], k):
        out.append((np.ascontiguousarray(sinogram[..., idx, :]), angles[idx].copy()))
    return out
