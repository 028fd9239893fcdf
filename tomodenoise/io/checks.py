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

Two checks of the angles of one rotation (a static or XRD-CT scan) find what is legal but
almost surely wrong and return a one-sentence warning (None when all is well), for the
preprocessing to log and record: :func:`duplicated_angles_warning` (projections at the
same angle) and :func:`angle_span_warning` (a span that is neither about 180 nor about 360
degrees).
"""

from __future__ import annotations

from os import PathLike

import numpy as np

from .errors import ScanError

__all__ = [
    "MIN_DET_WIDTH",
    "RADIAN_SPAN_LIMIT",
    "SAME_ANGLE_DEG",
    "SPAN_TOLERANCE_DEG",
    "angle_order",
    "angle_span_warning",
    "check_angle_span",
    "check_degrees_not_radians",
    "check_detector_width",
    "duplicated_angles_warning",
]

#: Narrowest detector (columns, pixels) accepted: FBP, the centre search and the networks'
#: patches (``train.patch_size`` >= 8, downsampling U-Nets) need at least this many.
MIN_DET_WIDTH = 16

#: Angles read as degrees that span at most this many "degrees" (2 pi plus a small margin)
#: are taken to be radians given as degrees.
RADIAN_SPAN_LIMIT = 2 * np.pi + 0.01

#: Projection angles closer than this many degrees count as the same angle.
SAME_ANGLE_DEG = 1e-4

#: The angles of a static scan are taken to cover half a turn or a full turn when their span
#: (or their span plus one angular step: a turn with its end angle left out) is within this
#: many degrees of 180 or 360.
SPAN_TOLERANCE_DEG = 10.0


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


def duplicated_angles_warning(angles_rad: np.ndarray) -> str | None:
    """The warning for projections of one rotation that share an angle (None when none do).

    Parameters
    ----------
    angles_rad : numpy.ndarray
        ``(angle,)`` projection angles in radians; angles within :data:`SAME_ANGLE_DEG` of
        each other count as the same.
    """
    a = np.sort(np.rad2deg(np.asarray(angles_rad, dtype=np.float64).reshape(-1)))
    same = np.diff(a) <= SAME_ANGLE_DEG
    n = int(np.count_nonzero(same))
    if n == 0:
        return None
    first = float(a[1:][same][0])
    times = int(np.count_nonzero(np.abs(a - first) <= SAME_ANGLE_DEG))
    return (f"{n} projection{'s' if n > 1 else ''} repeat{'' if n > 1 else 's'} the angle of another "
            f"(e.g. {first:.6g} deg {times} times): a scan takes each angle once, so the angles are probably read "
            "wrongly; check the angles file (input.angles_file) or input.angles_unit")


def angle_span_warning(angles_rad: np.ndarray) -> str | None:
    """The warning for the angles of a static scan that cover neither about 180 nor about 360
    degrees (None when they do, within :data:`SPAN_TOLERANCE_DEG`); beyond a turn it also
    names ``time.window`` (a dynamic scan read as static).

    The span counts either with or without one angular step, so that the usual ``0 .. 180``
    (or ``0 .. 360``) with its end angle left out (a span of ``180 - 180 / n``) passes.

    Parameters
    ----------
    angles_rad : numpy.ndarray
        ``(angle,)`` projection angles in radians.
    """
    a = np.rad2deg(np.asarray(angles_rad, dtype=np.float64).reshape(-1))
    if a.size < 2:
        return None
    span = float(np.ptp(a))
    covered = (span, span + span / (a.size - 1))
    if any(abs(c - turn) <= SPAN_TOLERANCE_DEG for c in covered for turn in (180.0, 360.0)):
        return None
    dynamic = ", or set time.window: angle if it is a dynamic scan" if span > 360.0 else ""
    return (f"the {a.size} angles span {span:.4g} degrees: a static scan normally covers about 180 or 360, so the "
            "angles or their unit are probably wrong; check input.angles_unit or the angles file (input.angles_file)"
            f"{dynamic}")
