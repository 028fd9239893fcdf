"""Which projection goes to which Noise2Inverse split and time step.

Noise2Inverse splits the projection angles of one scan into ``K`` disjoint,
interlaced subsets: split ``j`` takes the angles ``j, j + K, j + 2K, ...`` (in
acquisition order). Every split then covers the whole angular range with ``K``
times coarser sampling, so the ``K`` reconstructions show the same object with
statistically independent noise.

A dynamic scan is a stream of projections from continuous rotation; :func:`time_windows`
cuts it into time steps by rotation angle or by time, and the splits are then taken
within each step (:func:`split_indices` of the step's projections, so no split mixes two
steps). :func:`continuous_rotation` measures how far
a stream turns continuously (``time.window: auto`` calls a scan dynamic past 1.5 turns).

The angle axis is the second-to-last axis of a sinogram (``(..., angle, det)``,
see ``docs/CONVENTIONS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TimeStep", "continuous_rotation", "split_indices", "split_sinogram", "time_windows", "unwrap_rotation"]

#: A step between consecutive projections larger than this (radians) is a jump, not rotation.
MAX_ROTATION_STEP = np.pi / 2
#: ... and so is one larger than this many times the median step.
MAX_STEP_RATIO = 4.0
#: A continuous rotation: at least this share of the steps that move go forward by at most those limits.
CONTINUOUS_FRACTION = 0.8


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


# --- time steps of a dynamic scan -------------------------------------------------------------
@dataclass(frozen=True)
class TimeStep:
    """One time step of a dynamic scan: a window of the projection stream.

    Attributes
    ----------
    index : int
        Time step number (0-based).
    projections : numpy.ndarray
        Indices into the stream (acquisition order) of the projections in this window.
    time : float
        The step's time coordinate: the mean time stamp of its projections in seconds from
        the first projection, or the window's centre in seconds (time windows); the step
        index when the scan has no time stamps and the windows are by angle.
    start, stop : float
        The window: rotation in radians from the first projection (angle windows) or seconds
        from the first projection (time windows).
    """

    index: int
    projections: np.ndarray
    time: float
    start: float
    stop: float


def unwrap_rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation since the first projection, in radians, increasing, for angles in acquisition order.

    Continuous-rotation scans often store angles wrapped to one turn (``[0, 2 pi)``) or
    rotating backwards; they are unwrapped (period 2 pi) and turned positive, so the result
    grows through all turns of the stream.
    """
    a = np.unwrap(np.asarray(angles, dtype=np.float64).reshape(-1), period=2 * np.pi)
    if a.size < 2:
        return a - a[:1]
    sign = 1.0 if np.median(np.diff(a)) >= 0 else -1.0
    return sign * (a - a[0])


def continuous_rotation(angles: np.ndarray) -> float:
    """How far a projection stream (angles in radians, acquisition order) turns continuously, in radians.

    Each step between consecutive projections is taken the short way round (so angles wrapped
    to one turn unwrap) in the stream's direction (the sign of the median step). The rotation
    is the net sum of the steps of at most :data:`MAX_ROTATION_STEP` and :data:`MAX_STEP_RATIO`
    median steps; larger jumps (projections out of order, a restart) are not rotation. A stream
    that is not a continuous rotation (fewer than :data:`CONTINUOUS_FRACTION` of its moving
    steps go forward within those limits: shuffled or back-and-forth angles) turns by 0.

    A static scan whose angles cover 0..357 deg, in order or with a few out of order, turns
    by about 357 deg; a continuous rotation of three turns by 1080 deg.
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.size < 2 or not np.isfinite(a).all():
        return 0.0
    d = (np.diff(a) + np.pi) % (2 * np.pi) - np.pi  # each step the short way round, in [-pi, pi)
    moving = d[d != 0]
    if moving.size == 0:
        return 0.0
    d = d * (1.0 if np.median(moving) >= 0 else -1.0)
    typical = float(np.median(np.abs(moving)))
    limit = min(MAX_ROTATION_STEP, MAX_STEP_RATIO * typical)
    small = np.abs(d) <= limit
    if np.count_nonzero(small & (d > 0)) < CONTINUOUS_FRACTION * moving.size:
        return 0.0
    return max(float(d[small].sum()), 0.0)


def time_windows(
    angles: np.ndarray,
    timestamps: np.ndarray | None = None,
    *,
    by: str = "angle",
    span: float = np.pi,
    seconds: float | None = None,
    offset: float = 0.0,
) -> list[TimeStep]:
    """Cut a projection stream (acquisition order) into time steps.

    Parameters
    ----------
    angles : numpy.ndarray
        ``(n,)`` angles in radians, in acquisition order (continuous rotation).
    timestamps : numpy.ndarray, optional
        ``(n,)`` acquisition times in seconds (needed for ``by="time"``).
    by : {"angle", "time"}
        Windows of ``span`` radians of rotation (one rotation: pi or 2 pi), or of ``seconds``.
    span : float
        Rotation per step in radians (``by="angle"``).
    seconds : float, optional
        Length of a step in seconds (``by="time"``).
    offset : float
        Start of the first window after the first projection (radians or seconds).

    Returns
    -------
    list of TimeStep
        The complete windows in order; a last window shorter than its length (by more than
        half a projection interval) is left out. The number of projections per window need
        not be constant: a window holds the projections that fall into it, so 299.92
        projections per step give steps of 299 and 300.

    Raises
    ------
    ValueError
        For an unknown ``by``, a non-positive length, missing time stamps, or a stream
        shorter than one window.
    """
    a = unwrap_rotation(angles)
    n = a.size
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if ts is not None and ts.shape[0] != n:
        raise ValueError(f"{ts.shape[0]} time stamps for {n} projections")
    if by == "angle":
        length, pos = float(span), a
    elif by == "time":
        if ts is None:
            raise ValueError("time windows need the projections' time stamps (the scan has none): "
                             "use angle windows (time.window: angle) instead")
        if seconds is None:
            raise ValueError("time windows need their length: set time.seconds")
        length, pos = float(seconds), ts - ts[0]
    else:
        raise ValueError(f"windows are by 'angle' or 'time', got {by!r}")
    if not np.isfinite(length) or length <= 0:
        raise ValueError(f"the window length must be > 0, got {length}")
    if n < 2:
        raise ValueError("a dynamic scan needs more than one projection")
    step = float(np.median(np.diff(pos)))
    rel = pos - float(offset)
    # a window is complete when the projections cover it to within half a projection interval
    n_steps = int(np.floor((rel[-1] + 1.5 * step) / length + 1e-9))
    if n_steps < 1:
        raise ValueError(f"the stream covers {rel[-1] + step:.4g} of the window length {length:.4g}: "
                         "not one complete time step")
    which = np.floor(rel / length + 1e-9).astype(np.int64)
    out = []
    for t in range(n_steps):
        idx = np.flatnonzero(which == t)
        if idx.size == 0:
            raise ValueError(f"time step {t} holds no projection (window {length:.4g} shorter than a projection interval)")
        if ts is not None:
            time_value = float(np.mean(ts[idx] - ts[0]))
        else:
            time_value = float(t)
        out.append(TimeStep(t, idx, time_value, float(offset) + t * length, float(offset) + (t + 1) * length))
    return out
