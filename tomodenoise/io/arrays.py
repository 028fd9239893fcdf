"""NumPy (``.npy``, ``.npz``) and Zarr (``.zarr``) arrays: sinograms or raw projection stacks.

Conventions
-----------
**Sinograms** (already -log line integrals; ``RawScan.preprocessed = True``):

- a ``.npy`` file or a Zarr array: ``(z, angle, det)`` or ``(angle, det)`` (one slice);
- a ``.npz`` file or a Zarr group with a ``sinogram`` (or ``sinograms``, or ``data``)
  array of that shape. The scan store's ``(time, channel, z, angle, det)`` layout is
  accepted when ``time`` and ``channel`` have length 1.

**Raw projections** (intensities, flat/dark-corrected by the preprocessing):

- a ``.npz`` file or Zarr group with a ``projections`` (or ``tomo``) array
  ``(angle, z, det)`` and optional ``flats`` and ``darks`` arrays ``(n, z, det)``;
- a ``.npy`` file or Zarr array read with ``kind="projections"``, or with
  ``flats=``/``darks=`` given.

``flats=``/``darks=`` (arrays, or a file, folder or glob of ``.npy``, TIFF or HDF5 files:
see :mod:`tomodenoise.io.fields`) replace a group's ``flats``/``darks`` arrays; they are
refused for sinograms (already line integrals).

**Angles**: ``angles_file`` (``.npy`` or text), else an ``angles`` (or ``theta``, or
``angle``) array in the ``.npz``/Zarr group, else a ``<stem>_angles.npy`` or
``<stem>_angles.txt`` file beside a ``.npy`` file. Their unit is the ``angles_unit``
argument (degrees by default) unless the file says otherwise: an ``angles_unit`` (or
``units``) string in the ``.npz``, or a ``units``/``angles_unit`` attribute on the Zarr
angles array or group.

``slices=(start, stop)`` selects detector rows (``z``); ``.npy`` files are memory-mapped
and Zarr arrays sliced, so only those rows are read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .base import RawScan, check_scan_arrays, check_slices, load_angles, parse_unit, saturation_of, to_radians
from .errors import ScanError
from .fields import fields_attrs, read_field
from .files import is_zarr_store

__all__ = ["array_format", "read_array"]

_SINO_KEYS = ("sinogram", "sinograms", "data")
_PROJ_KEYS = ("projections", "tomo")
_ANGLE_KEYS = ("angles", "theta", "angle")

Kind = Literal["auto", "sinogram", "projections"]


class _Source:
    """A uniform view of an .npz file or a Zarr group: keys, lazy arrays, attributes."""

    def __init__(self, path: Path, obj: Any, is_zarr: bool) -> None:
        self.path, self.obj, self.is_zarr = path, obj, is_zarr

    def keys(self) -> list[str]:
        if self.is_zarr:
            return [k for k, _ in self.obj.arrays()]
        return list(self.obj.files)

    def get(self, key: str) -> Any:
        try:
            return self.obj[key]
        except Exception as exc:  # noqa: BLE001 - npz/zarr raise a variety of errors
            raise ScanError(self.path, key, "a readable array", exc) from None

    def unit(self, key: str | None) -> str | None:
        if self.is_zarr:
            for holder in ([self.obj[key]] if key else []) + [self.obj]:
                for name in ("units", "angles_unit"):
                    v = holder.attrs.get(name)
                    if v:
                        return parse_unit(v, self.path, key)
            return None
        for name in ("angles_unit", "units"):
            if name in self.obj.files:
                return parse_unit(np.asarray(self.obj[name]), self.path, name)
        return None


def array_format(path: str | PathLike[str]) -> str | None:
    """``"npy"``, ``"npz"`` or ``"zarr"``: the array format of ``path`` (a ``.npy``/``.npz`` file or
    a Zarr store), or None for anything else."""
    p = Path(path)
    if is_zarr_store(p):
        return "zarr"
    suffix = p.suffix.lower()
    return suffix[1:] if suffix in (".npy", ".npz") and p.is_file() else None


def _open(path: Path) -> tuple[Any, bool]:
    """(object, is_zarr): a numpy array / memmap, an NpzFile, a zarr Array or Group."""
    suffix = path.suffix.lower()
    is_zarr = suffix == ".zarr" or is_zarr_store(path)
    try:
        if is_zarr:
            import zarr

            return zarr.open(store=str(path), mode="r"), True
        if suffix == ".npz":
            return np.load(path, allow_pickle=False), False
        return np.load(path, mmap_mode="r", allow_pickle=False), False
    except Exception as exc:  # noqa: BLE001 - numpy/zarr raise a variety of errors
        raise ScanError(path, None, "a readable .npy/.npz file or Zarr store", exc) from None


def _pick(keys: Sequence[str], wanted: Sequence[str]) -> str | None:
    for w in wanted:
        if w in keys:
            return w
    return None


def _as_sinogram(arr: Any, path: Path, name: str, slices: Sequence[int] | None) -> tuple[np.ndarray, slice]:
    shape = tuple(arr.shape)
    if len(shape) == 5:
        if shape[0] != 1 or shape[1] != 1:
            raise ScanError(path, name, "a (z, angle, det) sinogram stack (or (time, channel, z, angle, det) "
                            "with one time step and one channel)", f"shape {shape}")
        rows = check_slices(slices, shape[2], path, name)
        return np.asarray(arr[0, 0, rows]), rows
    if len(shape) == 2:
        rows = check_slices(slices, 1, path, name)
        return np.asarray(arr[:])[None], rows
    if len(shape) == 3:
        rows = check_slices(slices, shape[0], path, name)
        return np.asarray(arr[rows]), rows
    raise ScanError(path, name, "a (z, angle, det) or (angle, det) sinogram", f"shape {shape}")


def _as_projections(arr: Any, path: Path, name: str, slices: Sequence[int] | None) -> tuple[np.ndarray, slice]:
    shape = tuple(arr.shape)
    if len(shape) != 3:
        raise ScanError(path, name, "an (angle, z, det) projection stack", f"shape {shape}")
    rows = check_slices(slices, shape[1], path, name)
    return np.asarray(arr[:, rows, :]), rows


def _field(stored: Any, rows: slice, path: Path, name: str) -> np.ndarray:
    """A group's own ``flats``/``darks`` array, ``(n, z, det)`` (or one ``(z, det)`` image)."""
    a = stored
    if np.ndim(a) == 2:
        a = np.asarray(a)[None]
    if np.ndim(a) != 3:
        raise ScanError(path, name, f"an (n, z, det) stack of {name}", f"shape {np.shape(a)}")
    return np.array(a[:, rows, :])


def read_array(
    path: str | PathLike[str],
    *,
    angles_file: str | PathLike[str] | None = None,
    angles_unit: str = "deg",
    slices: Sequence[int] | None = None,
    kind: Kind = "auto",
    flats: Any = None,
    darks: Any = None,
) -> RawScan:
    """Read a sinogram stack or a raw projection stack from ``.npy``, ``.npz`` or ``.zarr``.

    See the module docstring for the conventions (keys, shapes, angles).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy``/``.npz`` file or ``.zarr`` store.
    angles_file : str or os.PathLike, optional
        Angles (``.npy`` or text), one per projection; wins over stored angles.
    angles_unit : {"deg", "rad"}
        Unit of the angles when the file does not say.
    slices : (int, int), optional
        Keep only detector rows (``z``) ``start:stop``.
    kind : {"auto", "sinogram", "projections"}
        How to read a bare array (``.npy``, Zarr array): ``sinogram`` reads it as
        ``(z, angle, det)``/``(angle, det)`` -log sinograms, ``projections`` as a raw
        ``(angle, z, det)`` stack, ``auto`` as projections when ``flats`` or ``darks`` are
        given and as sinograms otherwise. For ``.npz``/Zarr groups the keys decide.
    flats, darks : numpy.ndarray, path, folder, glob or list of paths, optional
        Flat and dark fields for raw projections (see :mod:`tomodenoise.io.fields`): for a
        bare array, or replacing a group's ``flats``/``darks``.

    Returns
    -------
    RawScan
        ``projections`` always ``(angle, z, det)`` (a sinogram stack is transposed);
        ``preprocessed`` True for sinograms.

    Raises
    ------
    ScanError
        Missing or unreadable file, no known key, wrong shapes, missing angles, angles that
        do not match, NaN/inf, unusable flats.
    """
    p = Path(path)
    if not p.exists():
        raise ScanError(p, None, "an existing .npy/.npz file or .zarr store", "no such file")
    if kind not in ("auto", "sinogram", "projections"):
        raise ValueError(f"kind must be 'auto', 'sinogram' or 'projections', not {kind!r}")
    obj, is_zarr = _open(p)
    try:
        if (is_zarr and not hasattr(obj, "shape")) or (not is_zarr and hasattr(obj, "files")):
            got = _from_group(_Source(p, obj, is_zarr), kind, slices, flats, darks)
        else:
            got = _from_array(p, obj, is_zarr, kind, slices, flats, darks)
    finally:
        if not is_zarr and hasattr(obj, "close"):
            obj.close()
    data, names = got.data, got.names
    if data.size == 0:
        raise ScanError(p, names.get("projections"), "a non-empty sinogram or projection stack",
                        f"shape {data.shape}")
    if got.preprocessed and (flats is not None or darks is not None):
        raise ScanError(p, names.get("projections"), "raw projections to go with the flat/dark fields given "
                        "(input.flats/input.darks)", "a sinogram of line integrals, which needs none",
                        hint="leave input.flats and input.darks empty for a sinogram, or store the raw "
                             "projections (a 'projections' array)")
    angles, names["angles"] = _angles(p, got, angles_file, angles_unit)
    if got.preprocessed and data.dtype.kind not in "fiu":
        raise ScanError(p, names["projections"], "real numeric sinogram values", f"dtype {data.dtype}")
    check_scan_arrays(p, data, angles, got.flats, got.darks, names=names, saturation=got.saturation,
                      preprocessed=got.preprocessed)
    attrs = {
        "format": "zarr" if is_zarr else p.suffix.lower().lstrip("."),
        "kind": "sinogram" if got.preprocessed else "projections",
        "rows": [int(got.rows.start), int(got.rows.stop)],
        **fields_attrs(got.flats, got.darks, names),
    }
    return RawScan(np.array(data, dtype=np.float32, order="C"), got.flats, got.darks, angles, source=str(p),
                   preprocessed=got.preprocessed, attrs=attrs)


@dataclass
class _Read:
    """What a ``.npy``/``.npz``/Zarr input holds, as read: the stack, its fields and stored angles."""

    data: np.ndarray
    rows: slice
    preprocessed: bool
    names: dict[str, str]
    flats: np.ndarray | None = None
    darks: np.ndarray | None = None
    saturation: float | None = None
    angles: np.ndarray | None = None  # stored in the file
    angles_unit: str | None = None  # the unit the file gives them
    angles_file: Path | None = None  # <stem>_angles.npy/.txt beside a .npy file
    angles_name: str | None = None


def _sinograms(arr: Any, path: Path, name: str, slices: Sequence[int] | None) -> _Read:
    """A sinogram stack read as ``(angle, z, det)`` -log projections."""
    sino, rows = _as_sinogram(arr, path, name, slices)
    return _Read(np.transpose(sino, (1, 0, 2)), rows, True, {"projections": name})


def _projections(arr: Any, path: Path, name: str, slices: Sequence[int] | None, flats: Any, darks: Any,
                 own: Callable[[str], Any] | None = None) -> _Read:
    """A raw ``(angle, z, det)`` projection stack with its flat and dark fields: those given
    (``flats``/``darks``), else the group's own (``own("flats")``; None: none)."""
    data, rows = _as_projections(arr, path, name, slices)
    shape = tuple(arr.shape[1:])
    names = {"projections": name}
    fields: dict[str, np.ndarray | None] = {}
    for what, spec in (("flats", flats), ("darks", darks)):
        stored = own(what) if own is not None else None
        if spec is not None:
            fields[what], names[what] = read_field(spec, what, shape, rows)
        else:
            names[what] = what
            fields[what] = None if stored is None else _field(stored, rows, path, what)
    return _Read(data, rows, False, names, fields["flats"], fields["darks"], saturation_of(data.dtype))


def _from_group(src: _Source, kind: Kind, slices: Sequence[int] | None, flats: Any, darks: Any) -> _Read:
    """An ``.npz`` file or Zarr group: projections or sinograms by their key, and stored angles."""
    p, keys = src.path, src.keys()
    pkey, skey = _pick(keys, _PROJ_KEYS), _pick(keys, _SINO_KEYS)
    if pkey is not None and kind != "sinogram":
        got = _projections(src.get(pkey), p, pkey, slices, flats, darks,
                           own=lambda what: src.get(what) if what in keys else None)
    elif skey is not None:
        got = _sinograms(src.get(skey), p, skey, slices)
    else:
        raise ScanError(p, None, f"an array named one of {list(_PROJ_KEYS + _SINO_KEYS)}", f"keys {sorted(keys)}")
    akey = _pick(keys, _ANGLE_KEYS)
    if akey is not None:
        got.angles = np.asarray(src.get(akey)[:] if src.is_zarr else src.get(akey))
        got.angles_name, got.angles_unit = akey, src.unit(akey)
    return got


def _from_array(p: Path, arr: Any, is_zarr: bool, kind: Kind, slices: Sequence[int] | None, flats: Any,
                darks: Any) -> _Read:
    """A bare ``.npy`` file or Zarr array: sinograms or (by ``kind`` and fields) projections; its
    angles from the Zarr attributes, or a ``<stem>_angles`` file beside a ``.npy``."""
    name = p.name
    if kind == "projections" or (kind == "auto" and (flats is not None or darks is not None)):
        got = _projections(arr, p, name, slices, flats, darks)
    else:
        got = _sinograms(arr, p, name, slices)
    if is_zarr:
        a = arr.attrs.get("angles")
        if a is not None:
            got.angles, got.angles_name = np.asarray(a), "attrs['angles']"
            got.angles_unit = parse_unit(arr.attrs.get("angles_unit") or arr.attrs.get("units"), p, got.angles_name)
        return got
    for cand in (p.with_name(p.stem + "_angles.npy"), p.with_name(p.stem + "_angles.txt")):
        if cand.is_file():
            got.angles_file = cand
            break
    return got


def _angles(p: Path, got: _Read, angles_file: str | PathLike[str] | None, angles_unit: str) -> tuple[np.ndarray, str]:
    """(radians, name) of the projection angles: ``angles_file``, else the stored ones, else the
    file beside a ``.npy``."""
    angles_file = angles_file if angles_file is not None else got.angles_file
    if angles_file is not None:
        return load_angles(angles_file, angles_unit), str(angles_file)
    if got.angles is not None:
        return to_radians(got.angles, got.angles_unit or angles_unit, p, got.angles_name,
                          from_attribute=got.angles_unit is not None), got.angles_name
    raise ScanError(p, "angles", f"projection angles: an angles_file, or an 'angles'/'theta' array in the "
                    f"file, with {got.data.shape[0]} values", "none")
