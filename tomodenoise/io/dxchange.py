"""Data Exchange HDF5 (APS, tomopy/dxchange layout): read and write.

Layout read and written::

    /exchange/data         (angle, z, det)  projections (raw counts)
    /exchange/data_white   (n, z, det)      flat (white) fields, optional
    /exchange/data_dark    (n, z, det)      dark fields, optional
    /exchange/theta        (angle,)         rotation angles, degrees unless its ``units``
                                            attribute says radians
    /exchange/timestamps   (angle,)         acquisition time of each projection, optional:
                                            seconds unless its ``units`` attribute says
                                            ms/us/ns (or ISO 8601 strings)

Where ``/exchange/timestamps`` is absent, the areaDetector layout of the APS beamlines is
read: ``/defaults/NDArrayTimeStamp`` (seconds, one per saved frame) with
``/defaults/SaveDest`` saying where each frame went (0 = ``/exchange/data``, 1 =
``data_dark``, 2 = ``data_white``); its projection frames are kept when they can be matched
one to one with ``/exchange/data``, and it is ignored (with a warning) otherwise.

The file is opened read-only; ``slices=(start, stop)`` reads only those detector rows.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import RawScan, check_scan_arrays, check_slices, load_angles, parse_unit, saturation_of, to_radians
from .errors import ScanError
from .fields import FieldSpec, read_field

__all__ = ["is_dxchange", "read_dxchange", "to_seconds", "write_dxchange"]

log = logging.getLogger(__name__)

DATA = "/exchange/data"
WHITE = "/exchange/data_white"
DARK = "/exchange/data_dark"
THETA = "/exchange/theta"
TIMESTAMPS = "/exchange/timestamps"
AD_TIMESTAMP = "/defaults/NDArrayTimeStamp"
AD_SAVE_DEST = "/defaults/SaveDest"

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


def open_h5(path: str | PathLike[str]) -> h5py.File:
    """Open an HDF5 file read-only, turning a missing or unreadable file into a ScanError."""
    p = Path(path)
    if not p.exists():
        raise ScanError(p, None, "an existing HDF5 file", "no such file")
    if not p.is_file():
        raise ScanError(p, None, "an HDF5 file", "a folder")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise ScanError(p, None, "a readable HDF5 file", exc) from None


def is_dxchange(path: str | PathLike[str]) -> bool:
    """True when ``path`` is an HDF5 file with an ``/exchange`` group."""
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("/exchange"), h5py.Group)
    except (OSError, ValueError):
        return False


def _dataset(f: h5py.File, name: str, path: Path, *, required: bool, expected: str) -> h5py.Dataset | None:
    try:
        obj = f.get(name)
    except (KeyError, OSError) as exc:  # a broken link
        raise ScanError(path, name, expected, f"an unreadable link ({exc})") from None
    if obj is None:
        if required:
            raise ScanError(path, name, expected, "no such dataset")
        return None
    if not isinstance(obj, h5py.Dataset):
        raise ScanError(path, name, expected, f"a {type(obj).__name__}, not a dataset")
    return obj


def _read_rows(ds: h5py.Dataset, rows: slice, path: Path, name: str) -> np.ndarray:
    if ds.ndim != 3:
        raise ScanError(path, name, "a 3-D (angle, z, det) array", f"shape {ds.shape}")
    try:
        return ds[:, rows, :]
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(path, name, "readable numeric data", exc) from None


def _read_values(ds: h5py.Dataset, path: Path, name: str) -> np.ndarray:
    try:
        return ds[()]
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(path, name, "readable timestamps", exc) from None


def _timestamps(f: h5py.File, path: Path, n: int) -> tuple[np.ndarray | None, str | None]:
    """The projections' timestamps (seconds) and where they came from, or (None, None)."""
    ds = _dataset(f, TIMESTAMPS, path, required=False, expected=f"{n} projection timestamps (one per projection)")
    if ds is not None:
        t = to_seconds(_read_values(ds, path, TIMESTAMPS), ds.attrs.get("units"), path, TIMESTAMPS)
        if t.shape[0] != n:
            raise ScanError(path, TIMESTAMPS, f"{n} timestamps (one per projection in {DATA})",
                            f"{t.shape[0]} timestamps")
        return t, TIMESTAMPS
    try:
        ds = _dataset(f, AD_TIMESTAMP, path, required=False, expected="frame timestamps")
        if ds is None:
            return None, None
        t = to_seconds(_read_values(ds, path, AD_TIMESTAMP), ds.attrs.get("units"), path, AD_TIMESTAMP)
        if t.shape[0] == n:
            return t, AD_TIMESTAMP
        dest = _dataset(f, AD_SAVE_DEST, path, required=False, expected="frame destinations")
        dest = None if dest is None else np.asarray(dest[()]).reshape(-1)
        if dest is not None and dest.shape == t.shape and np.count_nonzero(dest == 0) == n:
            return t[dest == 0], f"{AD_TIMESTAMP} ({AD_SAVE_DEST} 0)"
        found = f"{t.shape[0]} frame timestamps" + ("" if dest is None else f", {np.count_nonzero(dest == 0)} "
                                                    f"of them with {AD_SAVE_DEST} 0")
    except (ScanError, OSError, TypeError, ValueError) as exc:
        found = str(exc)
    log.warning("%s: ignoring %s: expected one timestamp per projection (%d); found %s", path, AD_TIMESTAMP, n, found)
    return None, None


def read_dxchange(
    path: str | PathLike[str],
    *,
    angles_file: str | PathLike[str] | None = None,
    angles_unit: str = "deg",
    slices: Sequence[int] | None = None,
    flats: FieldSpec = None,
    darks: FieldSpec = None,
) -> RawScan:
    """Read a Data Exchange HDF5 scan.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file.
    angles_file : str or os.PathLike, optional
        Angles (``.npy`` or text) to use instead of ``/exchange/theta``.
    angles_unit : {"deg", "rad"}
        Unit of ``/exchange/theta`` when it has no ``units`` attribute (a ``units``
        attribute wins), and of ``angles_file``.
    slices : (int, int), optional
        Read only detector rows ``start:stop``.
    flats, darks : path, folder, glob, list of paths or numpy.ndarray, optional
        Flat and dark fields kept apart from the file (see :mod:`tomodenoise.io.fields`);
        they replace ``/exchange/data_white`` and ``/exchange/data_dark``.

    Returns
    -------
    RawScan
        ``projections (angle, z, det)`` float32, flats/darks (or None when absent), angles
        in radians, ``preprocessed=False``; ``timestamps`` (seconds, one per projection)
        from ``/exchange/timestamps`` (or the areaDetector ``/defaults/NDArrayTimeStamp``,
        see the module docstring), else None; ``attrs["timestamps"]`` names the dataset.

    Raises
    ------
    ScanError
        Missing or unreadable file, missing ``/exchange/data`` or ``/exchange/theta`` (and
        no ``angles_file``), wrong shapes, angles that do not match the projections,
        NaN/inf, unusable flats, ``/exchange/timestamps`` that are not one finite time per
        projection (or have an unknown unit).
    """
    p = Path(path)
    with open_h5(p) as f:
        ds = _dataset(f, DATA, p, required=True, expected="a 3-D (angle, z, det) projection dataset")
        if ds.ndim != 3:
            raise ScanError(p, DATA, "a 3-D (angle, z, det) array of projections", f"shape {ds.shape}")
        if 0 in ds.shape:
            raise ScanError(p, DATA, "a non-empty (angle, z, det) stack of projections", f"shape {ds.shape}")
        rows = check_slices(slices, ds.shape[1], p, DATA)
        proj = _read_rows(ds, rows, p, DATA)
        saturation = saturation_of(ds.dtype)
        names = {"projections": DATA, "flats": WHITE, "darks": DARK}
        full_shape = tuple(ds.shape[1:])
        if flats is not None:
            flats, names["flats"] = read_field(flats, "flats", full_shape, rows)
        else:
            w = _dataset(f, WHITE, p, required=False, expected="a 3-D (n, z, det) flat-field dataset")
            flats = _read_rows(w, rows, p, WHITE) if w is not None else None
        if darks is not None:
            darks, names["darks"] = read_field(darks, "darks", full_shape, rows)
        else:
            d = _dataset(f, DARK, p, required=False, expected="a 3-D (n, z, det) dark-field dataset")
            darks = _read_rows(d, rows, p, DARK) if d is not None else None
        angles_name = THETA
        if angles_file is not None:
            angles = load_angles(angles_file, angles_unit)
            angles_name = str(angles_file)
        else:
            th = _dataset(f, THETA, p, required=True,
                          expected=f"rotation angles, one per projection ({ds.shape[0]}), or an angles_file")
            try:
                values = th[()]
            except (OSError, TypeError, ValueError) as exc:
                raise ScanError(p, THETA, "readable numeric angles", exc) from None
            attr_unit = parse_unit(th.attrs.get("units"), p, THETA)
            angles = to_radians(values, attr_unit or angles_unit, p, THETA, from_attribute=attr_unit is not None)
        timestamps, timestamps_name = _timestamps(f, p, int(ds.shape[0]))
    names["angles"] = angles_name
    check_scan_arrays(p, proj, angles, flats, darks, names=names, saturation=saturation)
    attrs = {
        "format": "dxchange",
        "rows": [int(rows.start), int(rows.stop)],
        "n_flats": 0 if flats is None else int(flats.shape[0]),
        "n_darks": 0 if darks is None else int(darks.shape[0]),
        "flats_source": names["flats"] if flats is not None else None,
        "darks_source": names["darks"] if darks is not None else None,
        "dtype": str(proj.dtype),
        "timestamps": timestamps_name,
    }
    return RawScan(proj, flats, darks, angles, source=str(p), preprocessed=False, attrs=attrs,
                   timestamps=timestamps)


def write_dxchange(
    path: str | PathLike[str],
    projections: np.ndarray,
    flats: np.ndarray | None,
    darks: np.ndarray | None,
    angles_rad: np.ndarray,
    *,
    overwrite: bool = True,
    timestamps: np.ndarray | None = None,
) -> Path:
    """Write a Data Exchange HDF5 file that :func:`read_dxchange` reads back.

    The file is written under a temporary name in the same folder and renamed when
    complete, so a reader never sees half a file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file to write.
    projections : numpy.ndarray
        ``(angle, z, det)`` projections (raw counts); the dtype is kept.
    flats, darks : numpy.ndarray or None
        ``(n, z, det)`` flat and dark fields (skipped when None).
    angles_rad : numpy.ndarray
        ``(angle,)`` angles in radians; stored in degrees (``units="degrees"``).
    overwrite : bool
        Replace an existing file (default) or raise ``FileExistsError``.
    timestamps : numpy.ndarray, optional
        ``(angle,)`` acquisition time of each projection in seconds; written to
        ``/exchange/timestamps`` (``units="s"``) when given.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For arrays of the wrong shape, or timestamps that are not one finite time per
        projection.
    """
    p = Path(path)
    proj = np.asarray(projections)
    ang = np.asarray(angles_rad, dtype=np.float64).reshape(-1)
    if proj.ndim != 3 or proj.size == 0:
        raise ValueError(f"projections must be a non-empty (angle, z, det) array, got shape {proj.shape}")
    if ang.shape[0] != proj.shape[0]:
        raise ValueError(f"{proj.shape[0]} projections but {ang.shape[0]} angles")
    ts = None
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.ndim != 1 or ts.shape[0] != proj.shape[0]:
            raise ValueError(f"{proj.shape[0]} projections but timestamps of shape {ts.shape}")
        if not np.isfinite(ts).all():
            raise ValueError("timestamps contain NaN or inf")
    for name, arr in (("flats", flats), ("darks", darks)):
        if arr is not None and (np.ndim(arr) != 3 or np.shape(arr)[1:] != proj.shape[1:]):
            raise ValueError(f"{name} must be (n, z, det) with (z, det) = {proj.shape[1:]}, got {np.shape(arr)}")
    if p.exists() and not overwrite:
        raise FileExistsError(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("implements", data="exchange:measurement")
            ex = f.create_group("exchange")
            d = ex.create_dataset("data", data=proj)
            d.attrs["axes"] = "theta:y:x"
            d.attrs["description"] = "transmission"
            d.attrs["units"] = "counts"
            if flats is not None:
                w = ex.create_dataset("data_white", data=np.asarray(flats))
                w.attrs["axes"] = "theta_white:y:x"
                w.attrs["units"] = "counts"
            if darks is not None:
                k = ex.create_dataset("data_dark", data=np.asarray(darks))
                k.attrs["axes"] = "theta_dark:y:x"
                k.attrs["units"] = "counts"
            t = ex.create_dataset("theta", data=np.rad2deg(ang))
            t.attrs["units"] = "degrees"
            if ts is not None:
                tsd = ex.create_dataset("timestamps", data=ts)
                tsd.attrs["units"] = "s"
                tsd.attrs["description"] = "acquisition time of each projection"
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
