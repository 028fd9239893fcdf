"""Readers of tomography scans, and the scan store.

:func:`read_scan` reads any supported input into a :class:`RawScan`; bad input raises a
:class:`ScanError` naming the file, the dataset and what was expected, before anything is
written. The scan store lives in :mod:`tomodenoise.io.store`.

Formats (``format=``):

==============  ==========================================================================
``dxchange``    Data Exchange HDF5 (``/exchange/data``, ``data_white``, ``data_dark``,
                ``theta``): :func:`tomodenoise.io.dxchange.read_dxchange`
``nexus``       NeXus NXtomo (image keys, external links):
                :func:`tomodenoise.io.nexus.read_nxtomo`
``tiff``        a folder, glob or multi-page file of TIFF images:
                :func:`tomodenoise.io.tiff.read_tiff_stack`
``npy``,        ``.npy``/``.npz`` files and ``.zarr`` stores of sinograms or projections:
``npz``,        :func:`tomodenoise.io.arrays.read_array`
``zarr``
``xrdct``       XRD-CT sinograms (channel, z, angle, translation), HDF5/NeXus NXdata or Zarr:
                :func:`tomodenoise.io.diffraction.read_xrdct`
``pencil``      NeXus pencil-beam absorption (data / monitor, no image_key):
                :func:`tomodenoise.io.diffraction.read_pencil_beam`
``auto``        chosen from the path (suffix, folder contents, HDF5 layout)
==============  ==========================================================================

Flat and dark fields kept apart from the projections (``flats=``, ``darks=``; the
configuration's ``input.flats``/``input.darks``) are read by every format from a file,
folder or glob of TIFF, ``.npy`` or HDF5 files: :mod:`tomodenoise.io.fields`.

A NeXus/HDF5 file with several entries (fluorescence, absorption and diffraction side by side)
is read one entry at a time: ``entry=`` (``input.entry``) names it, else the first entry a
reader understands is read; the console lists the entries and says which one is read
(:mod:`tomodenoise.io.entries`).

Every reader also checks the geometry (:mod:`tomodenoise.io.checks`): a detector narrower
than :data:`~tomodenoise.io.checks.MIN_DET_WIDTH` pixels, angles that are all the same and
degrees that look like radians are refused. Unsorted angles are accepted here; the
preprocessing sorts the projections by angle.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from .base import RawScan
from .checks import MIN_DET_WIDTH
from .errors import ScanError
from .fields import FieldSpec, is_hdf5

__all__ = ["FORMATS", "MIN_DET_WIDTH", "RawScan", "ScanError", "detect_format", "read_scan"]

FORMATS = ("dxchange", "nexus", "tiff", "npy", "npz", "zarr", "xrdct", "pencil")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".nexus", ".cxi")
_ALIASES = {"hdf5": "auto-hdf5", "h5": "auto-hdf5", "dx": "dxchange", "data_exchange": "dxchange",
            "nxtomo": "nexus", "nxs": "nexus", "tif": "tiff", "array": "npy", "arrays": "npy"}


def detect_format(path: str | PathLike[str]) -> str:
    """Guess the format of ``path``: one of :data:`FORMATS`.

    Raises
    ------
    ScanError
        When the path does not exist or its format is not recognised.
    """
    s = str(path)
    p = Path(s)
    if any(ch in s for ch in "*?[") and not p.exists():
        return "tiff"
    if not p.exists():
        raise ScanError(p, None, "an existing scan file or folder", "no such file or folder")
    suffix = p.suffix.lower()
    if p.is_dir():
        if suffix == ".zarr" or any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zarray")):
            from .diffraction import is_xrdct

            return "xrdct" if is_xrdct(p) else "zarr"
        return "tiff"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    if suffix in _HDF5_SUFFIXES or is_hdf5(p):
        return _hdf5_flavour(p)
    raise ScanError(p, None, "a scan in a known format: HDF5 (.h5/.nxs: Data Exchange or NeXus NXtomo), "
                    "TIFF (.tif, folder or glob), .npy/.npz or .zarr", f"suffix {suffix or '(none)'!r}")


def _hdf5_flavour(p: Path) -> str:
    from .dxchange import is_dxchange, open_h5
    from .nexus import is_nexus

    from .diffraction import is_pencil_beam, is_xrdct

    open_h5(p).close()  # missing/unreadable -> ScanError
    if is_dxchange(p):
        return "dxchange"
    if _probe(is_xrdct, p):
        return "xrdct"
    if _probe(is_pencil_beam, p):
        return "pencil"
    if is_nexus(p) or p.suffix.lower() in (".nxs", ".nx5", ".nexus"):
        return "nexus"
    raise ScanError(p, None, "a Data Exchange file (an /exchange group), a NeXus file (an NXentry group) or "
                    "XRD-CT sinograms (an NXdata group with a 4-D signal)", "none of these")


def _probe(check: Any, p: Path) -> bool:
    """``check(p)``, False when probing the file fails (e.g. an external link that cannot be opened).

    Detection must not fail on a file that another flavour reads: a NeXus NXtomo file whose
    NXdata signal is an external link to a detector file is an NXtomo scan, not an error.
    """
    try:
        return bool(check(p))
    except (KeyError, OSError, ValueError, RuntimeError):
        return False


def read_scan(
    path: str | PathLike[str],
    *,
    format: str = "auto",
    angles_file: str | PathLike[str] | None = None,
    angles_unit: str = "deg",
    slices: Sequence[int] | None = None,
    flats: FieldSpec = None,
    darks: FieldSpec = None,
    entry: str | None = None,
    **options: Any,
) -> RawScan:
    """Read a scan in any supported format.

    Parameters
    ----------
    path : str or os.PathLike
        File, folder or glob pattern (TIFF).
    format : str
        ``"auto"`` (from the path) or one of :data:`FORMATS`.
    angles_file : str or os.PathLike, optional
        Angles (``.npy`` or text, one per projection) overriding or supplying the file's.
    angles_unit : {"deg", "rad"}
        Unit of ``angles_file``, and of stored angles without a units attribute.
    slices : (int, int), optional
        Read only detector rows ``start:stop``.
    flats, darks : path, folder, glob, list of paths or numpy.ndarray, optional
        Flat and dark fields kept apart from the scan (``input.flats``/``input.darks``): a
        TIFF, ``.npy`` or HDF5 file, a folder or glob of them, or an ``(n, z, det)`` array
        (see :mod:`tomodenoise.io.fields`). When given they replace the fields found in
        the scan, which are then not read.
    entry : str, optional
        The entry of a NeXus/HDF5 file with several to read (``/entry2``; ``input.entry``);
        default: the first one a reader understands (:func:`tomodenoise.io.entries.read_entry`).
    **options
        Passed to the format's reader (e.g. ``data_path=`` for NeXus, ``kind=`` for
        arrays).

    Returns
    -------
    RawScan

    Raises
    ------
    ScanError
        For any bad input (see the readers), an ``entry`` the file does not have or no reader
        understands (the message lists the entries), an ``entry`` for a format without entries.
    ValueError
        For an unknown ``format``.
    """
    fmt = _ALIASES.get(str(format).lower(), str(format).lower())
    chosen = fmt in FORMATS
    if fmt == "auto":
        fmt = detect_format(path)
    elif fmt == "auto-hdf5":
        p = Path(path)
        if not p.exists():
            raise ScanError(p, None, "an existing HDF5 file", "no such file")
        fmt = _hdf5_flavour(p)
    kw: dict[str, Any] = dict(angles_file=angles_file, angles_unit=angles_unit, slices=slices, flats=flats,
                              darks=darks, **options)
    if entry is not None and not str(entry).strip("/ "):
        entry = None
    explicit_paths = any(options.get(k) for k in ("data_path", "image_key_path", "angles_path"))
    if fmt in _ENTRY_FORMATS and Path(path).is_file() and not explicit_paths:
        from .entries import read_entry

        return read_entry(path, fmt if chosen else None, entry,
                          lambda f, e: _read(path, f, dict(kw, entry=e) if e else kw, format), fmt)
    if entry is not None:
        raise ScanError(path, None, "input.entry only for a NeXus/HDF5 file with entries (nexus, xrdct or pencil "
                        "formats, without data_path)", f"a {fmt} scan and input.entry {entry!r}")
    return _read(path, fmt, kw, format)


_ENTRY_FORMATS = ("nexus", "xrdct", "pencil")


def _read(path: str | PathLike[str], fmt: str, kw: dict[str, Any], format: str) -> RawScan:
    if fmt == "dxchange":
        from .dxchange import read_dxchange

        return read_dxchange(path, **kw)
    if fmt == "nexus":
        from .nexus import read_nxtomo

        return read_nxtomo(path, **kw)
    if fmt == "tiff":
        from .tiff import read_tiff_stack

        return read_tiff_stack(path, **kw)
    if fmt == "xrdct":
        from .diffraction import read_xrdct

        return read_xrdct(path, **kw)
    if fmt == "pencil":
        from .diffraction import read_pencil_beam

        return read_pencil_beam(path, **kw)
    if fmt in ("npy", "npz", "zarr"):
        from .arrays import read_array

        return read_array(path, **kw)
    raise ValueError(f"unknown scan format {format!r}: use 'auto' or one of {', '.join(FORMATS)}")
