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
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .base import RawScan, check_scan_arrays, load_angles, saturation_of
from .errors import ScanError
from .fields import FieldSpec, fields_attrs, read_field
from .files import TIFF_SUFFIXES, is_glob, is_zarr_store, natural_key, read_stack

__all__ = ["is_tiff", "list_tiffs", "read_tiff_stack"]

_FLAT_PREFIXES = ("flat", "white")
_DARK_PREFIXES = ("dark",)
_ANGLE_FILES = ("angles.txt", "angles.npy", "theta.txt", "theta.npy")


def list_tiffs(path: str | PathLike[str]) -> list[Path]:
    """The TIFF files of a folder, a glob pattern or a single file, in natural name order."""
    s = str(path)
    if is_glob(s):
        files = [Path(f) for f in _glob.glob(s)]
    elif Path(s).is_dir():
        files = [f for f in Path(s).iterdir()]
    else:
        files = [Path(s)]
    files = [f for f in files if f.is_file() and f.suffix.lower() in TIFF_SUFFIXES]
    return sorted(files, key=natural_key)


def is_tiff(path: str | PathLike[str]) -> bool:
    """True for what :func:`read_tiff_stack` reads: a glob pattern that names no existing file,
    a folder that is not a Zarr store, or a ``.tif``/``.tiff`` file."""
    p = Path(path)
    if is_glob(path) and not p.exists():
        return True
    if p.is_dir():
        return not is_zarr_store(p)
    return p.suffix.lower() in TIFF_SUFFIXES


def _role(f: Path) -> str:
    low = f.name.lower()
    if low.startswith(_FLAT_PREFIXES):
        return "flat"
    if low.startswith(_DARK_PREFIXES):
        return "dark"
    return "proj"


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
    files, proj_files, single = _files(p, s)
    proj, rows, dtype = read_stack(proj_files, slices, p, "projection")
    full_shape = _image_shape(proj_files[0])
    own = [] if single else files  # a single (multi-page) file holds projections only
    if flats is not None:
        flat_arr, flat_name = read_field(flats, "flats", full_shape, rows)
    else:
        flat_arr, flat_name = _own_fields(own, "flat", slices, p, full_shape)
    if darks is not None:
        dark_arr, dark_name = read_field(darks, "darks", full_shape, rows)
    else:
        dark_arr, dark_name = _own_fields(own, "dark", slices, p, full_shape)
    angles_file = angles_file if angles_file is not None else _angles_beside(p, proj.shape[0])
    angles = load_angles(angles_file, angles_unit)
    names = {"projections": f"{len(proj_files)} projection file(s)", "angles": str(angles_file),
             "flats": flat_name, "darks": dark_name}
    check_scan_arrays(p, proj, angles, flat_arr, dark_arr, names=names, saturation=saturation_of(dtype))
    attrs = {
        "format": "tiff",
        "n_files": len(proj_files),
        "first_file": proj_files[0].name,
        "rows": [int(rows.start), int(rows.stop)],
        **fields_attrs(flat_arr, dark_arr, names),
        "dtype": str(dtype),
    }
    return RawScan(proj, flat_arr, dark_arr, angles, source=s, preprocessed=False, attrs=attrs)


def _files(p: Path, s: str) -> tuple[list[Path], list[Path], bool]:
    """(all TIFF files, the projection files, whether ``s`` is a single file) of a TIFF scan."""
    if not is_glob(s) and not p.exists():
        raise ScanError(p, None, "an existing TIFF file, folder of TIFF files or glob pattern", "no such file")
    files = list_tiffs(s)
    if not files:
        raise ScanError(p, None, "TIFF files (*.tif, *.tiff)", "none")
    single = len(files) == 1 and not p.is_dir() and not is_glob(s)
    proj_files = files if single else [f for f in files if _role(f) == "proj"]
    if not proj_files:
        raise ScanError(p, None, "projection TIFF files (besides flat*/dark* files)", "none")
    return files, proj_files, single


def _image_shape(f: Path) -> tuple[int, int]:
    """The ``(z, det)`` shape of the first page of ``f``: the whole detector."""
    import tifffile

    with tifffile.TiffFile(f) as t:
        return tuple(t.pages[0].shape)


def _own_fields(files: list[Path], role: str, slices: Sequence[int] | None, p: Path,
                full_shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The ``flat*``/``dark*`` files among ``files`` read as ``(n, rows, det)``, and their name."""
    what = f"{role}s"
    found = [f for f in files if _role(f) == role]
    if not found:
        return None, what
    arr, _, _ = read_stack(found, slices, p, f"{role} field", shape=full_shape)
    return arr, f"{found[0].name} ... ({len(found)} files)"


def _angles_beside(p: Path, n: int) -> Path:
    """The angles file beside the images (``angles.txt``, ...), or a ScanError."""
    folder = p if p.is_dir() else p.parent
    for name in _ANGLE_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ScanError(p, None, f"an angles_file (or {', '.join(_ANGLE_FILES)} beside the images) with "
                    f"{n} angles", "none given")
