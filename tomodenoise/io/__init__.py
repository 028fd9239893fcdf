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
``hdf5``        one of the HDF5 layouts above, chosen from the file
==============  ==========================================================================

Flat and dark fields kept apart from the projections (``flats=``, ``darks=``; the
configuration's ``input.flats``/``input.darks``) are read by every format from a file,
folder or glob of TIFF, ``.npy`` or HDF5 files: :mod:`tomodenoise.io.fields`.

A NeXus/HDF5 file with several entries (fluorescence, absorption and diffraction side by side)
is read one entry at a time: ``entry=`` (``input.entry``) names it, else the first entry a
reader understands is read; the console lists the entries and says which one is read
(:mod:`tomodenoise.io.entries`).

Each format is a :class:`~tomodenoise.io.registry.Reader` in the one registry
:data:`~tomodenoise.io.registry.READERS`: its name, whether it reads a path (for ``auto``) and
its read function; :func:`read_scan` and :func:`detect_format` dispatch through it. The readers
share :mod:`tomodenoise.io.base` (the raw scan, its checks, angle and time conversions),
:mod:`tomodenoise.io.hdf5` (HDF5 and NeXus lookups) and :mod:`tomodenoise.io.files` (file
lists, TIFF pages), which import no reader.

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
from .fields import FieldSpec
from .files import is_glob
from .hdf5 import looks_hdf5, open_h5
from .registry import FORMATS, Reader, claimed_by, find_reader

__all__ = ["FORMATS", "MIN_DET_WIDTH", "RawScan", "ScanError", "detect_format", "read_scan"]

_HDF5_ALIASES = ("hdf5", "h5")


def detect_format(path: str | PathLike[str]) -> str:
    """Guess the format of ``path``: one of :data:`FORMATS`.

    Raises
    ------
    ScanError
        When the path does not exist or its format is not recognised.
    """
    return _detect(path).name


def _detect(path: str | PathLike[str]) -> Reader:
    """The reader that claims ``path`` (see :func:`~tomodenoise.io.registry.claimed_by`)."""
    p = Path(path)
    if not p.exists() and not is_glob(path):
        raise ScanError(p, None, "an existing scan file or folder", "no such file or folder")
    _refuse_special(p)
    hdf5 = looks_hdf5(p)
    if hdf5:
        open_h5(p).close()  # unreadable HDF5 -> ScanError
    reader = claimed_by(p)
    if reader is not None:
        return reader
    if hdf5:
        raise _not_hdf5_scan(p)
    raise ScanError(p, None, "a scan in a known format: HDF5 (.h5/.nxs: Data Exchange or NeXus NXtomo), "
                    "TIFF (.tif, folder or glob), .npy/.npz or .zarr", f"suffix {p.suffix.lower() or '(none)'!r}")


def _refuse_special(p: Path) -> None:
    """A FIFO, socket or device is not a scan (reading a FIFO would wait for ever)."""
    if p.exists() and not (p.is_file() or p.is_dir()):
        raise ScanError(p, None, "a scan file or folder", f"a {_file_kind(p)}")


def _file_kind(p: Path) -> str:
    """What a path that is neither a file nor a folder is: a FIFO, a socket or a device."""
    import stat

    mode = p.stat().st_mode
    return ("named pipe (FIFO)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISBLK(mode) or stat.S_ISCHR(mode) else "special file")


def _detect_hdf5(path: str | PathLike[str]) -> Reader:
    """The HDF5 reader that claims ``path`` (``format="hdf5"``)."""
    p = Path(path)
    if not p.exists():
        raise ScanError(p, None, "an existing HDF5 file", "no such file")
    open_h5(p).close()  # a folder, unreadable HDF5 -> ScanError
    reader = claimed_by(p, hdf5_only=True)
    if reader is None:
        raise _not_hdf5_scan(p)
    return reader


def _not_hdf5_scan(p: Path) -> ScanError:
    return ScanError(p, None, "a Data Exchange file (an /exchange group), a NeXus file (an NXentry group) or "
                     "XRD-CT sinograms (an NXdata group with a 4-D signal)", "none of these")


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
    name = str(format).lower()
    _refuse_special(Path(path))
    if name == "auto":
        reader: Reader | None = _detect(path)
    elif name in _HDF5_ALIASES:
        reader = _detect_hdf5(path)
    else:
        reader = find_reader(name)
    chosen = name not in ("auto", *_HDF5_ALIASES)  # the user named the format
    kw: dict[str, Any] = dict(angles_file=angles_file, angles_unit=angles_unit, slices=slices, flats=flats,
                              darks=darks, **options)
    if entry is not None and not str(entry).strip("/ "):
        entry = None
    explicit_paths = any(options.get(k) for k in ("data_path", "image_key_path", "angles_path"))
    if reader is not None and reader.entries and Path(path).is_file() and not explicit_paths:
        from .entries import read_entry

        def read_one(fmt: str, e: str | None) -> RawScan:
            return find_reader(fmt).read(path, **(dict(kw, entry=e) if e else kw))

        return read_entry(path, reader.name if chosen else None, entry, read_one, reader.name)
    if entry is not None:
        raise ScanError(path, None, "input.entry only for a NeXus/HDF5 file with entries (nexus, xrdct or pencil "
                        "formats, without data_path)", f"a {reader.name if reader else name} scan and input.entry "
                        f"{entry!r}")
    if reader is None:
        raise ValueError(f"unknown scan format {format!r}: use 'auto' or one of {', '.join(FORMATS)}")
    return reader.read(path, **kw)
