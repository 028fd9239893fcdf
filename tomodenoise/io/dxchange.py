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
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from .base import (RawScan, check_scan_arrays, check_slices, load_angles, parse_unit, saturation_of, to_radians,
                   to_seconds)
from .errors import ScanError
from .fields import FieldSpec, fields_attrs, read_field
from .hdf5 import EXCHANGE_DARK, EXCHANGE_DATA, EXCHANGE_WHITE, created, open_h5

__all__ = ["is_dxchange", "read_dxchange", "write_dxchange"]

log = logging.getLogger(__name__)

THETA = "/exchange/theta"
TIMESTAMPS = "/exchange/timestamps"
AD_TIMESTAMP = "/defaults/NDArrayTimeStamp"
AD_SAVE_DEST = "/defaults/SaveDest"


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
            raise ScanError(path, TIMESTAMPS, f"{n} timestamps (one per projection in {EXCHANGE_DATA})",
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
        ds = _dataset(f, EXCHANGE_DATA, p, required=True, expected="a 3-D (angle, z, det) projection dataset")
        if ds.ndim != 3:
            raise ScanError(p, EXCHANGE_DATA, "a 3-D (angle, z, det) array of projections", f"shape {ds.shape}")
        if 0 in ds.shape:
            raise ScanError(p, EXCHANGE_DATA, "a non-empty (angle, z, det) stack of projections",
                            f"shape {ds.shape}")
        rows = check_slices(slices, ds.shape[1], p, EXCHANGE_DATA)
        proj = _read_rows(ds, rows, p, EXCHANGE_DATA)
        saturation = saturation_of(ds.dtype)
        names = {"projections": EXCHANGE_DATA, "flats": EXCHANGE_WHITE, "darks": EXCHANGE_DARK}
        full_shape = tuple(ds.shape[1:])
        if flats is not None:
            flats, names["flats"] = read_field(flats, "flats", full_shape, rows)
        else:
            flats = _own_fields(f, p, EXCHANGE_WHITE, rows, "a 3-D (n, z, det) flat-field dataset")
        if darks is not None:
            darks, names["darks"] = read_field(darks, "darks", full_shape, rows)
        else:
            darks = _own_fields(f, p, EXCHANGE_DARK, rows, "a 3-D (n, z, det) dark-field dataset")
        if angles_file is not None:
            angles, names["angles"] = load_angles(angles_file, angles_unit), str(angles_file)
        else:
            angles, names["angles"] = _theta(f, p, int(ds.shape[0]), angles_unit), THETA
        timestamps, timestamps_name = _timestamps(f, p, int(ds.shape[0]))
    check_scan_arrays(p, proj, angles, flats, darks, names=names, saturation=saturation)
    attrs = {
        "format": "dxchange",
        "rows": [int(rows.start), int(rows.stop)],
        **fields_attrs(flats, darks, names),
        "dtype": str(proj.dtype),
        "timestamps": timestamps_name,
    }
    return RawScan(proj, flats, darks, angles, source=str(p), preprocessed=False, attrs=attrs,
                   timestamps=timestamps)


def _own_fields(f: h5py.File, p: Path, name: str, rows: slice, expected: str) -> np.ndarray | None:
    """The file's own flat or dark fields (``name``), rows ``rows``; None when it has none."""
    ds = _dataset(f, name, p, required=False, expected=expected)
    return _read_rows(ds, rows, p, name) if ds is not None else None


def _theta(f: h5py.File, p: Path, n: int, angles_unit: str) -> np.ndarray:
    """``/exchange/theta`` in radians (its ``units`` attribute wins over ``angles_unit``)."""
    th = _dataset(f, THETA, p, required=True, expected=f"rotation angles, one per projection ({n}), or an angles_file")
    try:
        values = th[()]
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(p, THETA, "readable numeric angles", exc) from None
    attr_unit = parse_unit(th.attrs.get("units"), p, THETA)
    return to_radians(values, attr_unit or angles_unit, p, THETA, from_attribute=attr_unit is not None)


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
    with created(p, overwrite) as f:
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
    return p
