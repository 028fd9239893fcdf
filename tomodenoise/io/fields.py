"""Flat and dark fields kept apart from the projections (``input.flats``, ``input.darks``).

Many beamlines write the flat (white) and dark fields beside the projections, not in the
same file or folder (Diamond's TIFF scans: ``projections/``, ``flats/``, ``darks/``). Every
reader takes them as ``flats=`` and ``darks=``; :func:`read_field` reads them from:

- a NumPy array ``(n, z, det)`` or ``(z, det)``;
- a ``.npy`` file of such an array;
- a TIFF file (one image or a multi-page stack);
- an HDF5 file: Data Exchange (``/exchange/data_white`` for flats, ``/exchange/data_dark``
  for darks, else ``/exchange/data``), NeXus NXtomo (the frames with image key 1 for
  flats, 2 for darks, else those with key 0; all frames without an image key), or any
  HDF5 file holding exactly one 3-D dataset;
- a folder of such files: those whose names start with ``flat``/``white`` (flats) or
  ``dark`` (darks) when there are any, else all files that do not start with the other
  kind's prefix;
- a glob pattern or a list of such files.

Files are read in natural name order and their frames stacked. The fields must cover the
projections' whole detector ``(z, det)``; only the rows kept by ``slices`` are read.
"""

from __future__ import annotations

import glob as _glob
from itertools import groupby
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from .errors import ScanError
from .files import TIFF_SUFFIXES, is_glob, natural_key, read_stack
from .hdf5 import (EXCHANGE_DARK, EXCHANGE_DATA, EXCHANGE_WHITE, HDF5_SUFFIXES, data_candidates, entries,
                   find_image_key, get, is_frames, looks_hdf5, open_h5, read_frames)

__all__ = ["FieldSpec", "field_files", "fields_attrs", "read_field"]

FieldSpec = str | PathLike | Sequence[str | PathLike] | np.ndarray | None

_PREFIXES = {"flats": ("flat", "white"), "darks": ("dark",)}
_WORD = {"flats": "flat field", "darks": "dark field"}


def _known(f: Path) -> bool:
    return f.is_file() and (f.suffix.lower() in TIFF_SUFFIXES + HDF5_SUFFIXES + (".npy",))


def field_files(spec: str | PathLike[str], what: Literal["flats", "darks"]) -> list[Path]:
    """The files a path, folder or glob pattern given as ``input.flats``/``input.darks`` names.

    Raises
    ------
    ScanError
        When the path does not exist or names no usable file.
    """
    s = str(spec)
    word = _WORD[what]
    if is_glob(s) and not Path(s).exists():
        files = sorted((Path(f) for f in _glob.glob(s) if Path(f).is_file()), key=natural_key)
        if not files:
            raise ScanError(s, None, f"{word} files matching the glob pattern given as input.{what}", "none",
                            hint="check the pattern")
        return files
    p = Path(s)
    if not p.exists():
        raise ScanError(p, None, f"an existing {word} file, folder or glob pattern (input.{what})",
                        "no such file or folder", hint=f"check the path given as input.{what}")
    if not p.is_dir():
        return [p]
    files = [f for f in p.iterdir() if _known(f)]
    own = [f for f in files if f.name.lower().startswith(_PREFIXES[what])]
    other = _PREFIXES["darks" if what == "flats" else "flats"]
    files = own or [f for f in files if not f.name.lower().startswith(other)]
    if not files:
        raise ScanError(p, None, f"{word} files (TIFF, .npy or HDF5) in the folder given as input.{what}", "none",
                        hint=f"give the folder, file or glob pattern that holds the {word}s")
    return sorted(files, key=natural_key)


def _check_shape(shape: tuple[int, ...], full_shape: tuple[int, int], path: str | PathLike[str],
                 name: str | None, what: str) -> None:
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or shape[0] == 0 or shape[1:] != tuple(full_shape):
        raise ScanError(path, name, f"a non-empty (n, z, det) stack of {_WORD[what]}s with (z, det) = "
                        f"{tuple(full_shape)} like the projections", f"shape {shape}",
                        hint=f"give {what} of the same detector (and binning) as the projections")


def _fit(a, full_shape: tuple[int, int], rows: slice, path: str | PathLike[str], name: str | None,
         what: str) -> np.ndarray:
    """Check an ``(n, z, det)`` (or ``(z, det)``) array against the detector and keep ``rows``."""
    if np.ndim(a) == 2:
        a = np.asarray(a)[None]
    _check_shape(np.shape(a), full_shape, path, name, what)
    try:
        return np.array(a[:, rows, :])
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(path, name, f"readable {_WORD[what]} data", exc) from None


def _read_npy(f: Path, what: str, full_shape: tuple[int, int], rows: slice) -> np.ndarray:
    try:
        a = np.load(f, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScanError(f, None, f"a readable .npy file of {_WORD[what]}s", exc) from None
    return _fit(a, full_shape, rows, f, None, what)


def _h5_frames(f: h5py.File, p: Path, what: str) -> tuple[str, h5py.Dataset, np.ndarray | None]:
    """(dataset name, dataset, frame indices or None for all) of the fields in an HDF5 file."""
    if isinstance(f.get("/exchange"), h5py.Group):
        own = EXCHANGE_WHITE if what == "flats" else EXCHANGE_DARK
        for name in (own, EXCHANGE_DATA):
            ds = get(f, name)
            if isinstance(ds, h5py.Dataset):
                return name, ds, None
        raise ScanError(p, own, f"a {_WORD[what]} dataset ({own} or {EXCHANGE_DATA}) in the Data Exchange file", "none")
    for entry in entries(f):
        for cand in data_candidates(f, entry):
            ds = get(f, cand)
            if not is_frames(ds):
                continue
            key_path = find_image_key(f, entry, cand, ds)
            if key_path is None:
                return cand, ds, None
            keys = np.asarray(f[key_path][()]).reshape(-1).astype(np.int64)
            idx = np.flatnonzero(keys == (1 if what == "flats" else 2))
            if idx.size == 0:
                idx = np.flatnonzero(keys == 0)
            if idx.size == 0:
                raise ScanError(p, key_path, f"frames with image key {1 if what == 'flats' else 2} "
                                f"({_WORD[what]}s) or 0", "none")
            return cand, ds, idx
    found: list[str] = []
    f.visititems(lambda n, o: found.append("/" + n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
    if len(found) == 1:
        return found[0], f[found[0]], None
    raise ScanError(p, None, f"one 3-D (n, z, det) {_WORD[what]} dataset (or a Data Exchange or NXtomo file)",
                    f"{len(found)} 3-D datasets{': ' + ', '.join(found[:5]) if found else ''}",
                    hint=f"give a file that holds only the {_WORD[what]}s")


def _read_h5(p: Path, what: str, full_shape: tuple[int, int], rows: slice) -> tuple[np.ndarray, str]:
    with open_h5(p) as f:
        name, ds, idx = _h5_frames(f, p, what)
        if idx is None:
            return _fit(ds, full_shape, rows, p, name, what), name
        _check_shape(ds.shape, full_shape, p, name, what)
        return read_frames(ds, idx, rows, p, name), name


def read_field(
    spec: FieldSpec,
    what: Literal["flats", "darks"],
    full_shape: tuple[int, int],
    rows: slice,
) -> tuple[np.ndarray, str]:
    """Read flat or dark fields given apart from the scan.

    Parameters
    ----------
    spec : array, path, folder, glob pattern or list of paths
        Where the fields are (see the module docstring).
    what : {"flats", "darks"}
        Which fields (chooses the datasets, image keys and file-name prefixes).
    full_shape : (int, int)
        The projections' whole detector ``(z, det)``, before ``rows``.
    rows : slice
        Detector rows to keep (those of the projections).

    Returns
    -------
    fields : numpy.ndarray
        ``(n, rows, det)`` in the stored dtype.
    name : str
        Where they came from, for messages and the scan's attributes.

    Raises
    ------
    ScanError
        Missing or unreadable files, no fields found, a detector shape unlike the
        projections'.
    """
    if what not in _WORD:
        raise ValueError(f"what must be 'flats' or 'darks', not {what!r}")
    if isinstance(spec, np.ndarray):
        return _fit(spec, full_shape, rows, f"input.{what}", None, what), f"{what} array"
    parts: list[np.ndarray] = []
    names: list[str] = []
    for tiff, run in groupby(_spec_files(spec, what), key=lambda f: f.suffix.lower() in TIFF_SUFFIXES):
        run = list(run)
        if tiff:  # consecutive TIFF files: one stack
            arr, _, _ = read_stack(run, (rows.start, rows.stop), run[0], _WORD[what], shape=tuple(full_shape))
            parts.append(arr)
            names.extend(str(t) for t in run)
            continue
        for f in run:
            arr, name = _read_file(f, what, full_shape, rows)
            parts.append(arr)
            names.append(name)
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    name = names[0] if len(names) == 1 else f"{names[0]} ... ({len(names)} files)"
    return out, name


def _spec_files(spec: FieldSpec, what: str) -> list[Path]:
    """The files a path, folder, glob pattern or list of paths names (checked to exist)."""
    if isinstance(spec, (str, PathLike)):
        return field_files(spec, what)
    files = [Path(s) for s in spec]
    if not files:
        raise ScanError(f"input.{what}", None, f"at least one {_WORD[what]} file", "an empty list")
    for f in files:
        if not f.is_file():
            raise ScanError(f, None, f"an existing {_WORD[what]} file", "no such file")
    return files


def _read_file(f: Path, what: str, full_shape: tuple[int, int], rows: slice) -> tuple[np.ndarray, str]:
    """The fields in one ``.npy`` or HDF5 file, and their name."""
    if f.suffix.lower() == ".npy":
        return _read_npy(f, what, full_shape, rows), str(f)
    if looks_hdf5(f):
        arr, ds_name = _read_h5(f, what, full_shape, rows)
        return arr, f"{f}:{ds_name}"
    raise ScanError(f, None, f"a {_WORD[what]} file in a supported format (TIFF, .npy or HDF5)",
                    f"suffix {f.suffix.lower() or '(none)'!r}")


def fields_attrs(flats: np.ndarray | None, darks: np.ndarray | None, names: dict[str, str]) -> dict[str, object]:
    """The scan attributes every reader records about its fields: how many flats and darks,
    and where they came from (``names["flats"]``/``names["darks"]``; None without fields)."""
    return {
        "n_flats": 0 if flats is None else int(flats.shape[0]),
        "n_darks": 0 if darks is None else int(darks.shape[0]),
        "flats_source": names["flats"] if flats is not None else None,
        "darks_source": names["darks"] if darks is not None else None,
    }
