"""The raw scan every reader returns, and the checks every reader runs on it.

A reader reads a file into a :class:`RawScan` (projections ``(angle, z, det)``, flats and
darks ``(n, z, det)``, angles in radians) and calls :func:`check_scan_arrays` before building
it, so that bad input gives a :class:`~tomodenoise.io.errors.ScanError` naming the file, the
dataset and what was expected, before anything downstream runs or writes. The readers also
share the conversions of stored values here: angles (:func:`parse_unit`, :func:`to_radians`,
:func:`load_angles`), timestamps (:func:`to_seconds`) and detector rows (:func:`check_slices`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .checks import MIN_DET_WIDTH, check_angle_span, check_degrees_not_radians, check_detector_width
from .errors import ScanError

__all__ = [
    "BAD_FLAT_FRACTION",
    "MIN_DET_WIDTH",
    "RawScan",
    "check_scan_arrays",
    "check_slices",
    "load_angles",
    "parse_unit",
    "saturation_of",
    "to_radians",
    "to_seconds",
]

#: A flat field is rejected when more than this fraction of its pixels is unusable
#: (mean flat <= mean dark, or saturated in every flat frame).
BAD_FLAT_FRACTION = 0.1

_DEG = {"deg", "degs", "degree", "degrees", "°"}
_RAD = {"rad", "rads", "radian", "radians"}


@dataclass
class RawScan:
    """A scan as read from disk, before flat/dark correction.

    Attributes
    ----------
    projections : numpy.ndarray
        ``(angle, z, det)`` float32: raw intensities, or -log line integrals when
        ``preprocessed`` is True.
    flats : numpy.ndarray or None
        ``(n, z, det)`` float32 flat (white) fields, or None.
    darks : numpy.ndarray or None
        ``(n, z, det)`` float32 dark fields, or None.
    angles : numpy.ndarray
        ``(angle,)`` float64 projection angles in radians, in acquisition order.
    source : str
        Where the scan came from (the path given to the reader).
    preprocessed : bool
        True when ``projections`` already are -log line integrals (e.g. a sinogram .npy):
        no flat/dark correction and no -log are applied then.
    attrs : dict
        Reader metadata (format, dataset paths, counts): JSON-serialisable values only.
    timestamps : numpy.ndarray or None
        ``(angle,)`` float64 acquisition time of each projection in seconds (dynamic scans:
        time steps can be windows in time), or None when the file has none.
    acquisition_index : numpy.ndarray or None
        ``(angle,)`` int64 acquisition order of each projection (frame or sequence number),
        or None: the projections are then in acquisition order as stored.
    channels : numpy.ndarray or None
        XRD-CT: the ``(channel,)`` coordinate values (q or scattering-angle bins, unit in
        ``attrs["channel_unit"]``); ``projections`` are then ``(channel, angle, z, det)``.
        None for absorption scans (``projections`` are ``(angle, z, det)``).
    """

    projections: np.ndarray
    flats: np.ndarray | None
    darks: np.ndarray | None
    angles: np.ndarray
    source: str = ""
    preprocessed: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    timestamps: np.ndarray | None = None
    acquisition_index: np.ndarray | None = None
    channels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.projections = np.asarray(self.projections, dtype=np.float32)
        if self.flats is not None:
            self.flats = np.asarray(self.flats, dtype=np.float32)
        if self.darks is not None:
            self.darks = np.asarray(self.darks, dtype=np.float32)
        self.angles = np.asarray(self.angles, dtype=np.float64).reshape(-1)
        self.source = str(self.source)
        n = int(self.projections.shape[-3]) if self.projections.ndim >= 3 else None
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
            if n is not None and self.timestamps.shape[0] != n:
                raise ValueError(f"{self.timestamps.shape[0]} timestamps for {n} projections")
        if self.acquisition_index is not None:
            self.acquisition_index = np.asarray(self.acquisition_index, dtype=np.int64).reshape(-1)
            if n is not None and self.acquisition_index.shape[0] != n:
                raise ValueError(f"{self.acquisition_index.shape[0]} acquisition indices for {n} projections")
        if self.channels is not None:
            self.channels = np.asarray(self.channels, dtype=np.float64).reshape(-1)
            if self.projections.ndim != 4 or self.projections.shape[0] != self.channels.shape[0]:
                raise ValueError(f"{self.channels.shape[0]} channel values need (channel, angle, z, det) "
                                 f"projections, got shape {self.projections.shape}")

    @property
    def n_channels(self) -> int:
        """Number of channels (1 for absorption scans, C diffraction channels for XRD-CT)."""
        return int(self.projections.shape[0]) if self.projections.ndim == 4 else 1

    @property
    def n_angles(self) -> int:
        """Number of projections."""
        return int(self.projections.shape[-3])

    @property
    def n_z(self) -> int:
        """Number of detector rows (slices)."""
        return int(self.projections.shape[-2])

    @property
    def n_det(self) -> int:
        """Number of detector columns."""
        return int(self.projections.shape[-1])


def parse_unit(unit: Any, path: str | PathLike[str], dataset: str | None) -> str | None:
    """Normalise an angle unit to ``"deg"`` or ``"rad"`` (None when ``unit`` is None or empty).

    Raises
    ------
    ScanError
        When the unit is neither degrees nor radians.
    """
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    if isinstance(unit, np.ndarray):
        if unit.size != 1:
            raise ScanError(path, dataset, "an angle unit (deg or rad)", unit)
        unit = unit.reshape(-1)[0]
        if isinstance(unit, bytes):
            unit = unit.decode("utf-8", "replace")
    text = str(unit).strip().lower()
    if not text:
        return None
    if text in _DEG:
        return "deg"
    if text in _RAD:
        return "rad"
    raise ScanError(path, dataset, "angle units of 'deg'/'degrees' or 'rad'/'radians'", repr(unit))


def to_radians(
    values: Any,
    unit: str,
    path: str | PathLike[str],
    dataset: str | None,
    *,
    from_attribute: bool = False,
) -> np.ndarray:
    """Angles in ``unit`` -> a 1-D float64 array of radians, checked to be finite.

    Parameters
    ----------
    values : array_like
        The angles as stored.
    unit : str
        ``"deg"`` or ``"rad"`` (or any spelling :func:`parse_unit` accepts).
    path, dataset : str
        Where they come from (for error messages).
    from_attribute : bool
        True when ``unit`` comes from a units attribute of the file: then radians are
        accepted only if all values lie within ``[-2 pi, 2 pi]`` (plus a small tolerance).

    Raises
    ------
    ScanError
        For non-numeric, non-1-D, empty or non-finite angles, radians out of range, or
        degrees whose span (at most about 2 pi) says they are radians
        (:func:`~tomodenoise.io.checks.check_degrees_not_radians`).
    """
    unit = parse_unit(unit, path, dataset) or "deg"
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScanError(path, dataset, "numeric projection angles", exc) from None
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ScanError(path, dataset, "a 1-D array of projection angles", f"shape {a.shape}")
    if a.size == 0:
        raise ScanError(path, dataset, "at least one projection angle", "an empty array")
    if not np.isfinite(a).all():
        bad = np.flatnonzero(~np.isfinite(a))
        raise ScanError(path, dataset, "finite projection angles", f"{bad.size} NaN/inf values (first at index {bad[0]})")
    if unit == "rad":
        if from_attribute and np.abs(a).max() > 2 * np.pi + 1e-3:
            raise ScanError(path, dataset, "angles within [-2 pi, 2 pi] as its units attribute says radians",
                            f"values up to {np.abs(a).max():.4g}",
                            hint="give the angles in input.angles_file with input.angles_unit: deg")
        return a
    check_degrees_not_radians(a, path, dataset, from_attribute=from_attribute)
    return np.deg2rad(a)


_TIME_SCALE = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 1e-3),
    **dict.fromkeys(("us", "µs", "μs", "usec", "usecs", "microsecond", "microseconds"), 1e-6),
    **dict.fromkeys(("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"), 1e-9),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60.0),
}


def _text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else ""
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    return str(v).strip()


def _parse_datetime(text: str) -> float:
    d = datetime.fromisoformat(text)
    if d.tzinfo is None:  # naive times: all taken as UTC, so differences are right
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def to_seconds(values: Any, units: Any, path: str | PathLike[str], dataset: str | None) -> np.ndarray:
    """Timestamps as stored -> a 1-D float64 array of seconds, checked to be finite.

    Parameters
    ----------
    values : array_like
        Numbers (in ``units``) or ISO 8601 date-time strings (bytes or str).
    units : str, bytes or None
        The dataset's ``units`` attribute: ``s`` (default when None or empty), ``ms``,
        ``us``/``µs``, ``ns`` or ``min`` (any common spelling); ignored for strings.
    path, dataset : str
        Where they come from (for error messages).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 seconds; date-time strings give seconds since the first of them
        (naive times are taken as UTC).

    Raises
    ------
    ScanError
        For an unknown unit, values that are neither numbers nor ISO 8601 strings, a shape
        other than 1-D, no values, or NaN/inf.
    """
    a = np.asarray(values)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1 or a.size == 0:
        raise ScanError(path, dataset, "a non-empty 1-D array of timestamps (one per projection)", f"shape {a.shape}")
    if a.dtype.kind in "SUO":
        try:
            t = np.array([_parse_datetime(_text(v)) for v in a], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ScanError(path, dataset, "numeric or ISO 8601 date-time timestamps", exc) from None
        t -= t[0]
    elif a.dtype.kind in "iuf":
        unit = _text(units) if units is not None else ""
        scale = _TIME_SCALE.get(unit.lower(), _TIME_SCALE.get(unit)) if unit else 1.0
        if scale is None:
            raise ScanError(path, dataset, "timestamp units of s, ms, us or ns", repr(unit))
        t = a.astype(np.float64) * scale
    else:
        raise ScanError(path, dataset, "numeric or ISO 8601 date-time timestamps", f"dtype {a.dtype}")
    if not np.isfinite(t).all():
        bad = np.flatnonzero(~np.isfinite(t))
        raise ScanError(path, dataset, "finite timestamps", f"{bad.size} NaN/inf values (first at index {bad[0]})")
    return t


def load_angles(path: str | PathLike[str], unit: str = "deg") -> np.ndarray:
    """Read an angles file (``.npy`` or text, one angle per line or whitespace/comma separated).

    Parameters
    ----------
    path : str or os.PathLike
        The angles file.
    unit : str
        Unit of the stored values, ``"deg"`` or ``"rad"``.

    Returns
    -------
    numpy.ndarray
        ``(angle,)`` float64 radians.

    Raises
    ------
    ScanError
        Missing, unreadable or malformed file.
    """
    p = Path(path)
    if not p.is_file():
        raise ScanError(p, None, "an existing angles file (.npy or text, one angle per projection)", "no such file")
    try:
        if p.suffix.lower() == ".npy":
            values = np.load(p, allow_pickle=False)
        else:
            text = p.read_text().replace(",", " ")
            rows = [ln.split("#", 1)[0] for ln in text.splitlines()]
            values = np.array([float(x) for ln in rows for x in ln.split()], dtype=np.float64)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ScanError(p, None, "a readable angles file (.npy or text numbers)", exc) from None
    return to_radians(values, unit, p, None)


def check_slices(slices: Sequence[int] | None, n_z: int, path: str | PathLike[str], dataset: str) -> slice:
    """Check ``slices=(start, stop)`` against ``n_z`` detector rows and return the row slice.

    Raises
    ------
    ScanError
        When not ``0 <= start < stop <= n_z``.
    """
    if slices is None:
        return slice(0, n_z)
    try:
        start, stop = (int(v) for v in slices)
    except (TypeError, ValueError):
        raise ScanError(path, dataset, "slices=(start, stop): two integers", repr(slices)) from None
    if not 0 <= start < stop <= n_z:
        raise ScanError(path, dataset, f"detector rows slices=(start, stop) with 0 <= start < stop <= {n_z}",
                        f"({start}, {stop})")
    return slice(start, stop)


def _check_finite(a: np.ndarray, path: str, dataset: str, what: str) -> None:
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.complexfloating):
        return
    ok = np.isfinite(a)
    if not ok.all():
        n_bad = int(a.size - np.count_nonzero(ok))
        first = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ScanError(path, dataset, f"finite {what}", f"{n_bad} NaN/inf values (first at index {first})")


def check_scan_arrays(
    path: str | PathLike[str],
    projections: np.ndarray,
    angles: np.ndarray,
    flats: np.ndarray | None = None,
    darks: np.ndarray | None = None,
    *,
    names: dict[str, str] | None = None,
    saturation: float | None = None,
    preprocessed: bool = False,
) -> None:
    """Check a scan's arrays; raise :class:`ScanError` on the first problem.

    Checks: projections are a non-empty 3-D ``(angle, z, det)`` stack without NaN/inf, at
    least :data:`~tomodenoise.io.checks.MIN_DET_WIDTH` pixels wide; one finite angle per
    projection, not all the same; flats/darks are ``(n, z, det)`` stacks matching the
    projections, finite, and the flats carry signal: not all zero, brighter than the darks
    and below ``saturation`` over all but :data:`BAD_FLAT_FRACTION` of the pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The file (for messages).
    projections, angles, flats, darks : numpy.ndarray
        As read (any dtype).
    names : dict, optional
        Dataset name of each array (keys ``projections``, ``angles``, ``flats``, ``darks``).
    saturation : float, optional
        The detector's saturation value (the integer dtype's maximum for raw counts).
    preprocessed : bool
        True for -log data (then no flats or darks are expected).
    """
    path = str(path)
    names = {"projections": "projections", "angles": "angles", "flats": "flats", "darks": "darks", **(names or {})}
    p = projections
    if p.ndim != 3:
        raise ScanError(path, names["projections"], "a 3-D (angle, z, det) stack of projections", f"shape {p.shape}")
    if p.size == 0:
        raise ScanError(path, names["projections"], "a non-empty (angle, z, det) stack of projections",
                        f"shape {p.shape}")
    if not (np.issubdtype(p.dtype, np.number) and not np.issubdtype(p.dtype, np.complexfloating)):
        raise ScanError(path, names["projections"], "real numeric projections", f"dtype {p.dtype}")
    a = np.asarray(angles)
    if a.ndim != 1 or a.shape[0] != p.shape[0]:
        raise ScanError(path, names["angles"], f"{p.shape[0]} angles (one per projection in {names['projections']})",
                        f"{a.shape[0] if a.ndim == 1 else 'shape ' + str(a.shape)} angles")
    _check_finite(a.astype(np.float64), path, names["angles"], "angles")
    check_angle_span(a, path, names["angles"])
    check_detector_width(int(p.shape[2]), path, names["projections"], p.shape)
    _check_finite(p, path, names["projections"], "projection values")
    if preprocessed:
        return
    for key, arr in (("flats", flats), ("darks", darks)):
        if arr is None:
            continue
        if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1:] != p.shape[1:]:
            raise ScanError(path, names[key], f"a non-empty (n, z, det) stack with (z, det) = {p.shape[1:]} "
                            f"like the projections", f"shape {arr.shape}")
        _check_finite(arr, path, names[key], f"{key[:-1]} values")
    if flats is None:
        return
    flat = flats.astype(np.float64).mean(axis=0)
    if not np.any(flats):
        raise ScanError(path, names["flats"], "flat (white) fields with signal", "all values are zero")
    dark = darks.astype(np.float64).mean(axis=0) if darks is not None else np.zeros_like(flat)
    bad = flat <= dark
    frac = float(bad.mean())
    if frac > BAD_FLAT_FRACTION:
        what = f"mean dark ({names['darks']})" if darks is not None else "zero"
        raise ScanError(path, names["flats"], f"flat fields brighter than the {what} over at least "
                        f"{100 * (1 - BAD_FLAT_FRACTION):.0f} % of the detector",
                        f"flat <= dark on {100 * frac:.1f} % of the pixels")
    if saturation is not None:
        sat = flats.min(axis=0) >= saturation
        frac = float(sat.mean())
        if frac > BAD_FLAT_FRACTION:
            raise ScanError(path, names["flats"], f"unsaturated flat fields (below {saturation:g}) over at least "
                            f"{100 * (1 - BAD_FLAT_FRACTION):.0f} % of the detector",
                            f"saturated in every flat frame on {100 * frac:.1f} % of the pixels")


def saturation_of(dtype: np.dtype) -> float | None:
    """The saturation value of raw counts of ``dtype`` (integer maximum) or None for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None
