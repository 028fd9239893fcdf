"""Checks of a scan's geometry that every reader (and the preprocessing) runs.

- :func:`check_detector_width`: a detector narrower than :data:`MIN_DET_WIDTH` pixels is
  refused (too small to reconstruct or to train a network on; most often the axes of a
  stack are in the wrong order).
- :func:`check_angle_span`: angles that are all the same (a span of 0) are refused.
- :func:`check_degrees_not_radians`: angles read as degrees whose span is at most
  :data:`RADIAN_SPAN_LIMIT` (about 2 pi) look like radians and are refused, with how to
  set the unit.
- :func:`angle_order`: the permutation that sorts unsorted angles (monotonic angles,
  increasing or decreasing, are kept as they are).
"""

from __future__ import annotations

from os import PathLike

import numpy as np

from .errors import ScanError

__all__ = [
    "MIN_DET_WIDTH",
    "RADIAN_SPAN_LIMIT",
    "angle_order",
    "check_angle_span",
    "check_degrees_not_radians",
    "check_detector_width",
]

#: Narrowest detector (columns, pixels) accepted: FBP, the centre search and the networks'
#: patches (``train.patch_size`` >= 8, downsampling U-Nets) need at least this many.
MIN_DET_WIDTH = 16

#: Angles read as degrees that span at most this many "degrees" (2 pi plus a small margin)
#: are taken to be radians given as degrees.
RADIAN_SPAN_LIMIT = 2 * np.pi + 0.01


def check_detector_width(n_det: int, path: str | PathLike[str], dataset: str | None,
                         shape: tuple[int, ...] | None = None) -> None:
    """Refuse a detector narrower than :data:`MIN_DET_WIDTH` columns.

    Parameters
    ----------
    n_det : int
        Detector columns (the last axis of ``(angle, z, det)``).
    path, dataset : str
        Where the projections come from (for the message).
    shape : tuple of int, optional
        The projections' shape as read, quoted in the message.

    Raises
    ------
    ScanError
        When ``n_det < MIN_DET_WIDTH``.
    """
    if n_det >= MIN_DET_WIDTH:
        return
    where = f" in (angle, z, det) shape {tuple(int(v) for v in shape)}" if shape is not None else ""
    raise ScanError(path, dataset, f"a detector at least {MIN_DET_WIDTH} pixels wide, the least that can be "
                    "reconstructed and trained on", f"{n_det} pixels{where}",
                    hint="check that the stack's axes are in (angle, z, det) order (sinograms: (z, angle, det)) "
                         "and that the whole detector width was saved")


def check_angle_span(angles_rad: np.ndarray, path: str | PathLike[str], dataset: str | None) -> None:
    """Refuse projection angles that are all the same (or a single angle).

    Parameters
    ----------
    angles_rad : numpy.ndarray
        ``(angle,)`` projection angles in radians.
    path, dataset : str
        Where they come from (for the message).

    Raises
    ------
    ScanError
        When the angles span 0 degrees.
    """
    a = np.asarray(angles_rad, dtype=np.float64).reshape(-1)
    if a.size == 0 or np.ptp(a) > 0:
        return
    what = "one angle" if a.size == 1 else f"all {a.size} angles equal"
    raise ScanError(path, dataset, "projection angles that span a rotation (at least two different angles)",
                    f"{what} {np.rad2deg(a[0]):.6g} deg (a span of 0 deg)",
                    hint="check that the right dataset holds the rotation angles, or give them with "
                         "input.angles_file")


def check_degrees_not_radians(values: np.ndarray, path: str | PathLike[str], dataset: str | None, *,
                              from_attribute: bool = False) -> None:
    """Refuse angles read as degrees whose span (at most about 2 pi) says they are radians.

    Parameters
    ----------
    values : numpy.ndarray
        The angles as stored, read as degrees.
    path, dataset : str
        Where they come from (for the message).
    from_attribute : bool
        True when the unit came from the file's own ``units`` attribute (then the remedy is
        an angles file, since the attribute wins over ``input.angles_unit``).

    Raises
    ------
    ScanError
        When ``0 < span <= RADIAN_SPAN_LIMIT``.
    """
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size < 2:
        return
    span = float(np.ptp(a))
    if not 0 < span <= RADIAN_SPAN_LIMIT:
        return
    if from_attribute:
        hint = ("the file's units attribute says degrees, so give the angles as radians in input.angles_file "
                "with input.angles_unit: rad (angles_unit='rad')")
    else:
        hint = "set input.angles_unit: rad (angles_unit='rad' in Python) if they are radians"
    raise ScanError(path, dataset, "projection angles in degrees spanning more than 2 pi degrees",
                    f"{a.size} angles from {a.min():.4g} to {a.max():.4g}, a span of {span:.4g} degrees "
                    f"({np.deg2rad(span):.3g} rad), which looks like radians", hint=hint)


def angle_order(angles: np.ndarray) -> np.ndarray | None:
    """The stable permutation that sorts ``angles`` ascending, or None when they are monotonic.

    Angles that only increase or only decrease (repeats allowed) are left as they are:
    the interlaced splits then take evenly spread angles already.
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.size < 2:
        return None
    d = np.diff(a)
    if (d >= 0).all() or (d <= 0).all():
        return None
    return np.argsort(a, kind="stable")
