"""HDF5 helpers the readers share: opening a file, looking up objects through links, the
NeXus layout search (entries, frame datasets, image keys) and reading frames.

Every HDF5 reader (:mod:`~tomodenoise.io.dxchange`, :mod:`~tomodenoise.io.nexus`,
:mod:`~tomodenoise.io.diffraction`), the flat/dark fields (:mod:`~tomodenoise.io.fields`) and
the entry listing (:mod:`~tomodenoise.io.entries`) use these; this module uses none of them.

- :func:`is_hdf5`, :func:`looks_hdf5`: the HDF5 signature, and a file that claims to be HDF5
  (by suffix or signature).
- :func:`open_h5`: open read-only, a missing or unreadable file raising a ScanError.
- :func:`get`, :func:`walk`: lookups that skip dangling soft and external links.
- :func:`entries`, :func:`data_candidates`, :func:`find_image_key`: where a NeXus entry keeps
  its ``(frame, z, det)`` frames and their image keys.
- :func:`read_frames`: some frames of a dataset, read run by run.
- :data:`EXCHANGE_DATA`, :data:`EXCHANGE_WHITE`, :data:`EXCHANGE_DARK`: the Data Exchange
  projection, flat and dark datasets.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from .errors import ScanError

__all__ = [
    "created",
    "EXCHANGE_DARK",
    "EXCHANGE_DATA",
    "EXCHANGE_WHITE",
    "HDF5_SUFFIXES",
    "NEXUS_SUFFIXES",
    "attr_str",
    "data_candidates",
    "entries",
    "entry_path",
    "find_image_key",
    "get",
    "identity",
    "is_frames",
    "is_hdf5",
    "looks_hdf5",
    "nx_class",
    "open_h5",
    "read_frames",
    "walk",
]

#: File suffixes of HDF5 files (NeXus included).
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".nexus", ".cxi")
#: File suffixes that say NeXus.
NEXUS_SUFFIXES = (".nxs", ".nx5", ".nexus")
#: The Data Exchange projections, flat (white) and dark fields.
EXCHANGE_DATA = "/exchange/data"
EXCHANGE_WHITE = "/exchange/data_white"
EXCHANGE_DARK = "/exchange/data_dark"

_MAX_DEPTH = 6
_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(p: str | PathLike[str]) -> bool:
    """True when ``p`` is a readable file that starts with the HDF5 signature."""
    try:
        with open(p, "rb") as fh:
            return fh.read(8) == _SIGNATURE
    except OSError:
        return False


def looks_hdf5(p: str | PathLike[str]) -> bool:
    """True when ``p`` is a file with an HDF5 suffix (:data:`HDF5_SUFFIXES`) or the HDF5 signature."""
    path = Path(p)
    return path.is_file() and (path.suffix.lower() in HDF5_SUFFIXES or is_hdf5(path))


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


def nx_class(obj: h5py.HLObject) -> str:
    """The object's ``NX_class`` attribute as text (``""`` when it has none)."""
    v = obj.attrs.get("NX_class", b"")
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v)


def attr_str(obj: h5py.HLObject, name: str) -> str | None:
    """The attribute ``name`` as text (the first value of an array), or None when absent."""
    v = obj.attrs.get(name)
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size else ""
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v)


def get(f: h5py.File | h5py.Group, name: str) -> h5py.HLObject | None:
    """``f[name]`` or None when missing or a dangling (soft/external) link."""
    try:
        return f.get(name)
    except (KeyError, OSError, ValueError, RuntimeError):
        return None


def walk(group: h5py.Group, prefix: str, depth: int = 0) -> Iterator[tuple[str, h5py.HLObject]]:
    """``(path, object)`` of every reachable object under ``group`` (depth-limited), skipping
    dangling links.

    Paths start with ``prefix`` and are given as seen from the master file (an object reached
    through an external link reports its name inside the other file).
    """
    try:
        names = list(group.keys())
    except (OSError, RuntimeError):
        return
    for name in names:
        obj = get(group, name)
        if obj is None:
            continue
        path = f"{prefix}/{name}"
        yield path, obj
        if isinstance(obj, h5py.Group) and depth < _MAX_DEPTH:
            yield from walk(obj, path, depth + 1)


def identity(ds: h5py.Dataset) -> tuple[str, str]:
    """(real file path, name in that file): the same for every link to one dataset."""
    return (os.path.realpath(ds.file.filename), ds.name)


def entries(f: h5py.File) -> list[str]:
    """Paths of the file's ``NXentry`` groups (every top-level group when none is marked)."""
    out = []
    for name in f:
        obj = get(f, name)
        if isinstance(obj, h5py.Group) and nx_class(obj) == "NXentry":
            out.append(f"/{name}")
    if not out:  # files without NX_class attributes: every top-level group
        out = [f"/{n}" for n in f if isinstance(get(f, n), h5py.Group)]
    return out


def entry_path(entry: str) -> str:
    """``"entry2"`` or ``"/entry2/"`` -> ``"/entry2"``."""
    return "/" + str(entry).strip().strip("/")


def is_frames(obj: h5py.HLObject | None) -> bool:
    """True when ``obj`` is a non-empty 3-D ``(frame, z, det)`` dataset."""
    return isinstance(obj, h5py.Dataset) and obj.ndim == 3 and obj.size > 0


def _is_vector(obj: h5py.HLObject | None, n: int) -> bool:
    return isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.shape[0] == n


def data_candidates(f: h5py.File, entry: str) -> list[str]:
    """Paths that may hold an entry's frames, most likely first (standard places, then a search)."""
    out = [f"{entry}/data/data", f"{entry}/instrument/detector/data"]
    nxdata, nxdet = [], []
    eg = get(f, entry)
    if isinstance(eg, h5py.Group):
        for path, obj in walk(eg, entry):
            if isinstance(obj, h5py.Group):
                cls = nx_class(obj)
                if cls in ("NXdata", "NXdetector"):
                    d = get(obj, "data")
                    if is_frames(d):
                        signal = attr_str(obj, "signal")
                        rank = 0 if (cls == "NXdata" and signal in (None, "data")) else 1 if cls == "NXdata" else 2
                        (nxdata if rank < 2 else nxdet).append((rank, f"{path}/data"))
    out += [p for _, p in sorted(nxdata, key=lambda t: t[0])] + [p for _, p in nxdet]
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def find_image_key(f: h5py.File, entry: str, data_path: str, ds: h5py.Dataset) -> str | None:
    """Path of the ``image_key`` (one key per frame of ``ds``) that goes with ``data_path``, or None."""
    n = ds.shape[0]
    parent = data_path.rsplit("/", 1)[0]
    for cand in (f"{parent}/image_key", f"{entry}/instrument/detector/image_key", f"{entry}/data/image_key"):
        if _is_vector(get(f, cand), n):
            return cand
    eg = get(f, entry)
    if not isinstance(eg, h5py.Group):
        return None
    ident = identity(ds)
    fallback = None
    for path, obj in walk(eg, entry):
        if isinstance(obj, h5py.Group):
            d = get(obj, "data")
            if isinstance(d, h5py.Dataset) and identity(d) == ident and _is_vector(get(obj, "image_key"), n):
                return f"{path}/image_key"
        elif fallback is None and path.rsplit("/", 1)[-1] == "image_key" and _is_vector(obj, n):
            fallback = path
    return fallback


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs of sorted indices as (start, stop) pairs."""
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    stops = np.r_[idx[breaks] + 1, idx[-1] + 1]
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def read_frames(ds: h5py.Dataset, idx: np.ndarray, rows: slice, path: Path, name: str) -> np.ndarray:
    """Frames ``idx`` (sorted) of ``ds``, detector rows ``rows``, read run by run as ``(n, rows, det)``."""
    try:
        parts = [ds[a:b, rows, :] for a, b in _runs(idx)]
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(path, name, "readable frames", exc) from None
    if not parts:
        return np.empty((0, rows.stop - rows.start, ds.shape[2]), dtype=ds.dtype)
    return np.concatenate(parts, axis=0)


@contextmanager
def created(path: str | PathLike[str], overwrite: bool = False) -> Iterator[h5py.File]:
    """A new HDF5 file at ``path``, written under a temporary name beside it and renamed when
    the block ends without error (a reader never sees half a file); :class:`FileExistsError`
    when it exists and not ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(p)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_beside(p: Path) -> Path:
    """An empty file with a fresh hidden name beside ``p``, created with the mode any new file
    gets (0666 less the umask; mkstemp's 0600 would keep the group from reading the result)."""
    while True:
        tmp = p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
