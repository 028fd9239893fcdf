"""TIFF stacks: a folder or glob of TIFF files (one projection per file), or one multi-page TIFF.

- Files are sorted by name in natural order (``p2`` before ``p10``).
- In a folder or glob, files whose names start with ``flat`` (or ``white``) are flat fields
  and those starting with ``dark`` are dark fields; they can also be given explicitly
  (``flats=``/``darks=``: a file, a folder, a glob, a list of files, or an array; TIFF,
  ``.npy`` or HDF5, see :mod:`tomodenoise.io.fields`), e.g. when they are kept in folders
  beside the projection folder.
- Angles are required: ``angles_file`` (``.npy`` or text, one angle per projection), or a
  file named ``angles.txt``/``angles.npy``/``theta.txt``/``theta.npy`` beside the images.
  Degrees unless ``angles_unit="rad"``.
- ``slices=(start, stop)`` keeps only those detector rows (each image is read once).
"""

from __future__ import annotations

import glob as _glob
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import tifffile

from .base import RawScan, check_scan_arrays, check_slices, load_angles, saturation_of
from .errors import ScanError
from .fields import FieldSpec, read_field

__all__ = ["list_tiffs", "read_tiff_stack"]

_TIFF_SUFFIXES = (".tif", ".tiff")
_FLAT_PREFIXES = ("flat", "white")
_DARK_PREFIXES = ("dark",)
_ANGLE_FILES = ("angles.txt", "angles.npy", "theta.txt", "theta.npy")


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _is_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def list_tiffs(path: str | PathLike[str]) -> list[Path]:
    """The TIFF files of a folder, a glob pattern or a single file, in natural name order."""
    s = str(path)
    if _is_glob(s):
        files = [Path(f) for f in _glob.glob(s)]
    elif Path(s).is_dir():
        files = [f for f in Path(s).iterdir()]
    else:
        files = [Path(s)]
    files = [f for f in files if f.is_file() and f.suffix.lower() in _TIFF_SUFFIXES]
    return sorted(files, key=_natural_key)


def _role(f: Path) -> str:
    low = f.name.lower()
    if low.startswith(_FLAT_PREFIXES):
        return "flat"
    if low.startswith(_DARK_PREFIXES):
        return "dark"
    return "proj"


def read_stack(files: list[Path], rows_spec: Sequence[int] | None, source: Path, what: str,
               shape: tuple[int, int] | None = None) -> tuple[np.ndarray, slice, np.dtype]:
    """Read files (each one or more 2-D pages) into ``(n, rows, det)``, checking shapes."""
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


def read_tiff_stack(
    path: str | PathLike[str],
    *,
    angles_file: str | PathLike[str] | None = None,
    angles_unit: str = "deg",
    slices: Sequence[int] | None = None,
    flats: FieldSpec = None,
    darks: FieldSpec = None,
) -> RawScan:
    """Read a TIFF stack of projections.

    Parameters
    ----------
    path : str or os.PathLike
        A folder of TIFF files, a glob pattern (``"scan/proj_*.tif"``) or one (multi-page)
        TIFF file. In a folder or glob, ``flat*``/``white*`` and ``dark*`` files are taken as
        flat and dark fields.
    angles_file : str or os.PathLike, optional
        Angles, one per projection (``.npy`` or text). Without it, ``angles.txt``,
        ``angles.npy``, ``theta.txt`` or ``theta.npy`` beside the images is used.
    angles_unit : {"deg", "rad"}
        Unit of the angles file.
    slices : (int, int), optional
        Keep only detector rows ``start:stop``.
    flats, darks : path, folder, glob, list of paths or numpy.ndarray, optional
        Flat and dark fields given explicitly (TIFF, ``.npy`` or HDF5; see
        :mod:`tomodenoise.io.fields`); they replace the ``flat*``/``dark*`` files, which are
        then not read. Arrays are ``(n, z, det)`` for the full detector height.

    Returns
    -------
    RawScan

    Raises
    ------
    ScanError
        No images, unreadable or differently shaped images, no angles file, angles that do
        not match the projections, NaN/inf, unusable flats.
    """
    s = str(path)
    p = Path(s)
    if not _is_glob(s) and not p.exists():
        raise ScanError(p, None, "an existing TIFF file, folder of TIFF files or glob pattern", "no such file")
    folder = p if p.is_dir() else p.parent
    files = list_tiffs(s)
    if not files:
        raise ScanError(p, None, "TIFF files (*.tif, *.tiff)", "none")
    single = len(files) == 1 and not p.is_dir() and not _is_glob(s)
    proj_files = files if single else [f for f in files if _role(f) == "proj"]
    if not proj_files:
        raise ScanError(p, None, "projection TIFF files (besides flat*/dark* files)", "none")

    proj, rows, dtype = read_stack(proj_files, slices, p, "projection")
    with tifffile.TiffFile(proj_files[0]) as t:
        full_shape = tuple(t.pages[0].shape)

    def fields(spec: FieldSpec, role: str, what: str) -> tuple[np.ndarray | None, str]:
        if spec is not None:
            return read_field(spec, what, full_shape, rows)
        if single:
            return None, what
        found = [f for f in files if _role(f) == role]
        if not found:
            return None, what
        arr, _, _ = read_stack(found, slices, p, f"{role} field", shape=full_shape)
        return arr, f"{found[0].name} ... ({len(found)} files)"

    flat_arr, flat_name = fields(flats, "flat", "flats")
    dark_arr, dark_name = fields(darks, "dark", "darks")

    if angles_file is None:
        for name in _ANGLE_FILES:
            if (folder / name).is_file():
                angles_file = folder / name
                break
        else:
            raise ScanError(p, None, f"an angles_file (or {', '.join(_ANGLE_FILES)} beside the images) with "
                            f"{proj.shape[0]} angles", "none given")
    angles = load_angles(angles_file, angles_unit)
    names = {"projections": f"{len(proj_files)} projection file(s)", "angles": str(angles_file),
             "flats": flat_name, "darks": dark_name}
    check_scan_arrays(p, proj, angles, flat_arr, dark_arr, names=names, saturation=saturation_of(dtype))
    attrs = {
        "format": "tiff",
        "n_files": len(proj_files),
        "first_file": proj_files[0].name,
        "rows": [int(rows.start), int(rows.stop)],
        "n_flats": 0 if flat_arr is None else int(flat_arr.shape[0]),
        "n_darks": 0 if dark_arr is None else int(dark_arr.shape[0]),
        "flats_source": flat_name if flat_arr is not None else None,
        "darks_source": dark_name if dark_arr is not None else None,
        "dtype": str(dtype),
    }
    return RawScan(proj, flat_arr, dark_arr, angles, source=s, preprocessed=False, attrs=attrs)
