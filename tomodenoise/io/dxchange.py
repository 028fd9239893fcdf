"""Data Exchange HDF5 (APS, tomopy/dxchange layout): read and write.

Layout read and written::

    /exchange/data         (angle, z, det)  projections (raw counts)
    /exchange/data_white   (n, z, det)      flat (white) fields, optional
    /exchange/data_dark    (n, z, det)      dark fields, optional
    /exchange/theta        (angle,)         rotation angles, degrees unless its ``units``
                                            attribute says radians

The file is opened read-only; ``slices=(start, stop)`` reads only those detector rows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from .base import RawScan, check_scan_arrays, check_slices, load_angles, parse_unit, saturation_of, to_radians
from .errors import ScanError
from .fields import FieldSpec, read_field

__all__ = ["is_dxchange", "read_dxchange", "write_dxchange"]

DATA = "/exchange/data"
WHITE = "/exchange/data_white"
DARK = "/exchange/data_dark"
THETA = "/exchange/theta"


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
        in radians, ``preprocessed=False``.

    Raises
    ------
    ScanError
        Missing or unreadable file, missing ``/exchange/data`` or ``/exchange/theta`` (and
        no ``angles_file``), wrong shapes, angles that do not match the projections,
        NaN/inf, unusable flats.
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
    }
    return RawScan(proj, flats, darks, angles, source=str(p), preprocessed=False, attrs=attrs)


def write_dxchange(
    path: str | PathLike[str],
    projections: np.ndarray,
    flats: np.ndarray | None,
    darks: np.ndarray | None,
    angles_rad: np.ndarray,
    *,
    overwrite: bool = True,
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

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For arrays of the wrong shape.
    """
    p = Path(path)
    proj = np.asarray(projections)
    ang = np.asarray(angles_rad, dtype=np.float64).reshape(-1)
    if proj.ndim != 3 or proj.size == 0:
        raise ValueError(f"projections must be a non-empty (angle, z, det) array, got shape {proj.shape}")
    if ang.shape[0] != proj.shape[0]:
        raise ValueError(f"{proj.shape[0]} projections but {ang.shape[0]} angles")
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
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
