"""The scan formats: one :class:`Reader` per format, in one registry (:data:`READERS`).

A reader names its format, says whether it reads a path (``claims``, for ``format="auto"``)
and reads it into a :class:`~tomodenoise.io.base.RawScan` (``read``).
:func:`~tomodenoise.io.read_scan` and :func:`~tomodenoise.io.detect_format` go through the
registry only; adding a format is a reader module (its ``read`` and ``claims`` functions) and
one line in :data:`READERS` (and the name in ``InputConfig.format`` of
:mod:`tomodenoise.config`).

Detection takes the first reader that claims the path, asking them in registry order: first
the readers that go by the file's name (TIFF, ``.npy``, ``.npz``), then the HDF5 layouts
(``hdf5``), and last the ``fallback`` readers, which claim any file of their container (any
NeXus file, any Zarr store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from .arrays import array_format, read_array
from .base import RawScan
from .diffraction import is_pencil_beam, is_xrdct, read_pencil_beam, read_xrdct
from .dxchange import is_dxchange, read_dxchange
from .nexus import is_nexus, read_nxtomo
from .tiff import is_tiff, read_tiff_stack

__all__ = ["FORMATS", "READERS", "Reader", "claimed_by", "find_reader"]


@dataclass(frozen=True)
class Reader:
    """One scan format.

    Attributes
    ----------
    name : str
        The format's name (``input.format``).
    read : callable
        ``read(path, *, angles_file, angles_unit, slices, flats, darks, **options) -> RawScan``;
        bad input raises a :class:`~tomodenoise.io.errors.ScanError`.
    claims : callable
        ``claims(path) -> bool``: True when ``read`` reads ``path`` (an existing file or
        folder, or a glob pattern); it looks at the path only as far as needed and does not
        raise for input of other formats.
    aliases : tuple of str
        Other names accepted for ``name`` (lower case).
    hdf5 : bool
        An HDF5 layout: asked for ``format="hdf5"``.
    entries : bool
        Reads one entry of a NeXus/HDF5 file with several (``entry=``, ``input.entry``; see
        :mod:`tomodenoise.io.entries`).
    fallback : bool
        Claims any file of its container: asked after the other readers.
    """

    name: str
    read: Callable[..., RawScan]
    claims: Callable[[Path], bool]
    aliases: tuple[str, ...] = ()
    hdf5: bool = False
    entries: bool = False
    fallback: bool = False


#: Every format, in the order formats are listed to users and detection asks them.
READERS: tuple[Reader, ...] = (
    Reader("dxchange", read_dxchange, is_dxchange, aliases=("dx", "data_exchange"), hdf5=True),
    Reader("nexus", read_nxtomo, is_nexus, aliases=("nxtomo", "nxs"), hdf5=True, entries=True, fallback=True),
    Reader("tiff", read_tiff_stack, is_tiff, aliases=("tif",)),
    Reader("npy", read_array, lambda p: array_format(p) == "npy", aliases=("array", "arrays")),
    Reader("npz", read_array, lambda p: array_format(p) == "npz"),
    Reader("zarr", read_array, lambda p: array_format(p) == "zarr", fallback=True),
    Reader("xrdct", read_xrdct, is_xrdct, hdf5=True, entries=True),
    Reader("pencil", read_pencil_beam, is_pencil_beam, hdf5=True, entries=True),
)

#: The format names, in registry order.
FORMATS: tuple[str, ...] = tuple(r.name for r in READERS)


def find_reader(name: str) -> Reader | None:
    """The reader of format ``name`` or of one of its aliases (any case); None when unknown."""
    key = str(name).lower()
    return next((r for r in READERS if key == r.name or key in r.aliases), None)


def claimed_by(path: str | PathLike[str], *, hdf5_only: bool = False) -> Reader | None:
    """The first reader that claims ``path``, or None (order: see the module docstring).

    ``hdf5_only``: ask only the HDF5 readers. A reader whose ``claims`` fails while probing
    the file (an external link that cannot be opened, say) does not claim it.
    """
    p = Path(path)
    readers = [r for r in READERS if r.hdf5 or not hdf5_only]
    for reader in sorted(readers, key=lambda r: (r.fallback, r.hdf5)):  # stable: registry order within
        if _probe(reader.claims, p):
            return reader
    return None


def _probe(claims: Callable[[Path], bool], p: Path) -> bool:
    """``claims(p)``, False when probing the file fails (e.g. an external link that cannot be opened).

    Detection must not fail on a file that another format reads: a NeXus NXtomo file whose
    NXdata signal is an external link to a detector file is an NXtomo scan, not an error.
    """
    try:
        return bool(claims(p))
    except (KeyError, OSError, ValueError, RuntimeError):
        return False
