"""File lists and TIFF images the readers share: natural name order, glob patterns, Zarr
stores, and TIFF pages read into a stack.

Used by the TIFF reader (:mod:`~tomodenoise.io.tiff`), the array reader
(:mod:`~tomodenoise.io.arrays`) and the flat/dark fields (:mod:`~tomodenoise.io.fields`);
this module uses none of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .base import check_slices
from .errors import ScanError

__all__ = ["TIFF_SUFFIXES", "is_glob", "is_zarr_store", "natural_key", "read_stack"]

#: File suffixes of TIFF images.
TIFF_SUFFIXES = (".tif", ".tiff")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def natural_key(p: Path) -> list:
    """Sort key of a file name in natural order (``p2`` before ``p10``), case-insensitive."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def is_glob(s: str | PathLike[str]) -> bool:
    """True when ``s`` holds a glob wildcard (``*``, ``?`` or ``[``)."""
    return any(ch in str(s) for ch in "*?[")


def is_zarr_store(p: str | PathLike[str]) -> bool:
    """True when ``p`` is a folder named ``.zarr`` or holding Zarr metadata (v2 or v3)."""
    path = Path(p)
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any((path / n).exists() for n in _ZARR_MARKERS))


def read_stack(files: list[Path], rows_spec: Sequence[int] | None, source: Path, what: str,
               shape: tuple[int, int] | None = None) -> tuple[np.ndarray, slice, np.dtype]:
    """Read TIFF files (each one or more 2-D pages) into ``(n, rows, det)``, checking shapes.

    ``rows_spec`` is ``slices=(start, stop)`` (None: all rows), checked against the first
    image; ``what`` names the images in messages (``"projection"``, ``"flat field"``);
    every image must have ``shape`` (default: the first image's). Returns the stack, the
    row slice kept and the promoted dtype of the images.
    """
    import tifffile  # here, not at import: only TIFF input needs it

    frames: list[np.ndarray] = []
    rows: slice | None = None
    dtype = None
    for f in files:
        try:
            with tifffile.TiffFile(f) as t:
                for i, page in enumerate(t.pages):
                    img = page.asarray()
                    if img.ndim != 2:
                        raise ScanError(f, f"page {i}", f"a 2-D (z, det) {what} image", f"shape {img.shape}")
                    if shape is None:
                        shape = img.shape
                    if img.shape != shape:
                        raise ScanError(f, f"page {i}", f"a {what} image of shape {shape} like the projections",
                                        f"shape {img.shape}")
                    if rows is None:
                        rows = check_slices(rows_spec, shape[0], f, f"page {i}")
                    dtype = img.dtype if dtype is None else np.promote_types(dtype, img.dtype)
                    frames.append(np.array(img[rows], copy=True))
        except ScanError:
            raise
        except (OSError, ValueError, tifffile.TiffFileError) as exc:
            raise ScanError(f, None, f"a readable TIFF {what} image", exc) from None
    if not frames:
        raise ScanError(source, None, f"at least one {what} image", "none")
    return np.stack(frames), rows, dtype


