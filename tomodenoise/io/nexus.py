"""NeXus NXtomo reader (HDF5 with image keys, often with external links).

All frames (projections, flats, darks) sit in one 3-D ``(frame, z, det)`` dataset; an
``image_key`` array says what each frame is (0 = projection, 1 = flat, 2 = dark,
3 = invalid, skipped). Flats and darks may come before and after the projections: all of
them are returned (and averaged by the preprocessing).

Where the datasets are is found, in this order:

- the explicit ``data_path``, ``image_key_path``, ``angles_path`` arguments;
- the standard NXtomo places ``<entry>/data/data``, ``<entry>/instrument/detector/data``,
  ``<entry>/instrument/detector/image_key``, ``<entry>/sample/rotation_angle``;
- a search of the entry: a 3-D ``data`` dataset in an ``NXdata`` (or ``NXdetector``)
  group, an ``image_key`` of the same length (beside the data, or in an ``NXdetector``
  whose ``data`` is the same dataset), and a rotation angle of the same length (the
  NXdata group's first axis, or a dataset whose name contains ``rotation_angle``,
  ``theta`` or ``angle``).

The frames and image keys are found with :func:`tomodenoise.io.hdf5.data_candidates` and
:func:`tomodenoise.io.hdf5.find_image_key` (shared with the flat/dark fields and the entry
listing); the rotation angle, timestamps and acquisition order are found here.

Diamond's DIAD layout (``/entry/imaging/data``, ``/entry/instrument/imaging/image_key``,
``/entry/imaging/gts_theta_value``) is found by the search. External links are followed;
links to files that are missing are skipped. Angles are degrees unless the dataset's
``units`` attribute says radians (or ``angles_unit="rad"`` when it has none).

Dynamic scans: the acquisition time of each projection is read, when the entry has one,
from a 1-D dataset with one value per frame (or per projection) named ``timestamp``,
``timestamps``, ``time_stamp``, ``NDArrayTimeStamp`` (areaDetector), ``start_time`` or
``frame_time`` (the last only when increasing: NeXus defines it as each frame's duration).
One beside the data (in the ``NXdetector`` holding it) comes first, then one in an
``NXdetector``, ``NXmonitor``, ``NXsample``, ``NXdata`` or ``NXcollection`` group, then
any other. Numbers are seconds unless the ``units`` attribute says ms/us/ns; ISO 8601
date-time strings become seconds since the first frame. The acquisition order is read
likewise from ``sequence_number``, ``image_number`` or ``frame_number``. Either is None
when the file has none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import h5py
import numpy as np

from .base import (RawScan, check_scan_arrays, check_slices, load_angles, parse_unit, saturation_of, to_radians,
                   to_seconds)
from .errors import ScanError
from .fields import FieldSpec, fields_attrs, read_field
from .hdf5 import (NEXUS_SUFFIXES, attr_str, data_candidates, entries, entry_path, find_image_key, get, identity,
                   is_frames, nx_class, open_h5, read_frames, walk)

__all__ = ["is_nexus", "read_nxtomo"]

log = logging.getLogger(__name__)

_ANGLE_WORDS = ("rotation_angle", "theta", "angle")
#: Names of per-frame time datasets, most likely first (lower case).
_TIME_NAMES = ("timestamp", "timestamps", "time_stamp", "ndarraytimestamp", "start_time", "frame_time")
#: Names of per-frame acquisition-order datasets, most likely first.
_INDEX_NAMES = ("sequence_number", "image_number", "frame_number")
_FRAME_CLASSES = ("NXdetector", "NXmonitor", "NXsample", "NXdata", "NXcollection")


def _is_angle_name(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _ANGLE_WORDS)


def _find_angles(f: h5py.File, entry: str, data_path: str, lengths: tuple[int, ...]) -> str | None:
    parent = data_path.rsplit("/", 1)[0]

    def ok(p: str) -> bool:
        obj = get(f, p)
        return isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.shape[0] in lengths \
            and np.issubdtype(obj.dtype, np.number)

    for cand in (f"{entry}/sample/rotation_angle", f"{parent}/rotation_angle", f"{entry}/data/rotation_angle"):
        if ok(cand):
            return cand
    pg = get(f, parent)
    if isinstance(pg, h5py.Group):
        axes = pg.attrs.get("axes")
        if axes is not None:
            first = np.asarray(axes).reshape(-1)
            if first.size:
                name = first[0].decode() if isinstance(first[0], bytes) else str(first[0])
                if name not in (".", "") and ok(f"{parent}/{name}"):
                    return f"{parent}/{name}"
        names = sorted((n for n in pg if _is_angle_name(n)), key=lambda n: ("set" in n.lower(), n))
        for name in names:
            if ok(f"{parent}/{name}"):
                return f"{parent}/{name}"
    eg = get(f, entry)
    if isinstance(eg, h5py.Group):
        found = []
        for path, obj in walk(eg, entry):
            if not isinstance(obj, h5py.Dataset):
                continue
            leaf = path.rsplit("/", 1)[-1]
            holder = path.rsplit("/", 2)[-2] if path.count("/") >= 2 else ""
            if (_is_angle_name(leaf) or (leaf == "value" and _is_angle_name(holder))) and ok(path):
                found.append(path)
        if found:
            found.sort(key=lambda p: ("set" in p.rsplit("/", 1)[-1].lower(), len(p)))
            return found[0]
    return None


def find_frame_vectors(f: h5py.File, entry: str, ds: h5py.Dataset, names: Sequence[str],
                       lengths: tuple[int, ...]) -> list[str]:
    """Paths of 1-D datasets under ``entry`` named one of ``names`` with a length in ``lengths``.

    Most likely first: those in a group whose ``data`` is ``ds`` (the detector holding the
    frames), then those in an NXdetector/NXmonitor/NXsample/NXdata/NXcollection group, then
    the rest; within a rank in the order of ``names``, then shorter paths first.
    """
    eg = get(f, entry)
    if not isinstance(eg, h5py.Group):
        return []
    ident = identity(ds)
    found, seen = [], set()
    for path, obj in walk(eg, entry):
        leaf = path.rsplit("/", 1)[-1].lower()
        if leaf not in names or not isinstance(obj, h5py.Dataset):
            continue
        shape = tuple(obj.shape or ())
        if len(shape) == 2 and 1 in shape:
            shape = (shape[0] * shape[1],)
        if len(shape) != 1 or shape[0] not in lengths or identity(obj) in seen:
            continue
        seen.add(identity(obj))
        holder = get(f, path.rsplit("/", 1)[0])
        data = get(holder, "data") if isinstance(holder, h5py.Group) else None
        if isinstance(data, h5py.Dataset) and identity(data) == ident:
            rank = 0
        else:
            rank = 1 if holder is not None and nx_class(holder) in _FRAME_CLASSES else 2
        found.append(((rank, names.index(leaf), len(path)), path))
    return [p for _, p in sorted(found)]


def _per_projection(values: np.ndarray, n: int, i_proj: np.ndarray) -> np.ndarray:
    """One value per frame (``n``) or per projection -> one per projection (image key 0)."""
    return values[i_proj] if values.shape[0] == n else values


def _frame_times(f: h5py.File, entry: str, ds: h5py.Dataset, i_proj: np.ndarray, path: Path,
                 explicit: str | None) -> tuple[np.ndarray | None, str | None]:
    """The projections' acquisition times in seconds and their dataset, or (None, None)."""
    n = ds.shape[0]
    lengths = (n, int(i_proj.size))
    cands = [explicit] if explicit else find_frame_vectors(f, entry, ds, _TIME_NAMES, lengths)
    for cand in cands:
        obj = get(f, cand)
        try:
            if not isinstance(obj, h5py.Dataset):
                raise ScanError(path, cand, "a timestamps dataset", "no such dataset")
            t = to_seconds(obj[()], attr_str(obj, "units"), path, cand)
            if t.shape[0] not in lengths:
                raise ScanError(path, cand, f"{n} timestamps (one per frame) or {i_proj.size} (one per projection)",
                                f"{t.shape[0]} values")
            if cand.rsplit("/", 1)[-1].lower() == "frame_time" and not (np.diff(t) > 0).all():
                continue  # frame durations, not times
            return _per_projection(t, n, i_proj), cand
        except (OSError, TypeError, ValueError) as exc:  # ScanError is a ValueError
            if explicit and isinstance(exc, ScanError):
                raise
            if explicit:
                raise ScanError(path, cand, "readable timestamps", exc) from None
            log.warning("%s: ignoring %s as timestamps: %s", path, cand, exc)
    return None, None


def _acquisition_index(f: h5py.File, entry: str, ds: h5py.Dataset, i_proj: np.ndarray,
                       path: Path) -> tuple[np.ndarray | None, str | None]:
    """The projections' acquisition order (sequence numbers) and their dataset, or (None, None)."""
    n = ds.shape[0]
    for cand in find_frame_vectors(f, entry, ds, _INDEX_NAMES, (n, int(i_proj.size))):
        try:
            v = np.asarray(get(f, cand)[()]).reshape(-1)
        except (OSError, TypeError, ValueError, KeyError) as exc:
            log.warning("%s: ignoring %s as acquisition index: %s", path, cand, exc)
            continue
        if v.dtype.kind in "iu" or (v.dtype.kind == "f" and np.isfinite(v).all() and (v == np.round(v)).all()):
            return _per_projection(v.astype(np.int64), n, i_proj), cand
    return None, None


def is_nexus(path: str | PathLike[str]) -> bool:
    """True when ``path`` is an HDF5 file with an ``NXentry`` group, or any HDF5 file named
    ``.nxs``/``.nx5``/``.nexus``."""
    try:
        with h5py.File(path, "r") as f:
            if Path(path).suffix.lower() in NEXUS_SUFFIXES:
                return True
            return any(isinstance(get(f, n), h5py.Group) and nx_class(f[n]) == "NXentry" for n in f)
    except (OSError, ValueError):
        return False


def read_nxtomo(
    path: str | PathLike[str],
    *,
    angles_file: str | PathLike[str] | None = None,
    angles_unit: str = "deg",
    slices: Sequence[int] | None = None,
    data_path: str | None = None,
    image_key_path: str | None = None,
    angles_path: str | None = None,
    flats: FieldSpec = None,
    darks: FieldSpec = None,
    timestamps_path: str | None = None,
    entry: str | None = None,
) -> RawScan:
    """Read a NeXus NXtomo scan.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.nxs`` (HDF5) file; external links are resolved relative to its folder.
    angles_file : str or os.PathLike, optional
        Angles of the projections (``.npy`` or text; one per projection, or one per frame)
        instead of the file's rotation angle.
    angles_unit : {"deg", "rad"}
        Unit of the rotation angle when it has no ``units`` attribute, and of ``angles_file``.
    slices : (int, int), optional
        Read only detector rows ``start:stop``.
    data_path, image_key_path, angles_path : str, optional
        Dataset paths inside the file, overriding the search.
    flats, darks : path, folder, glob, list of paths or numpy.ndarray, optional
        Flat and dark fields kept apart from the file (see :mod:`tomodenoise.io.fields`);
        they replace the frames with image key 1 (flats) or 2 (darks).
    timestamps_path : str, optional
        The per-frame (or per-projection) time dataset, overriding the search.
    entry : str, optional
        Read only this entry (``/entry2``) of a file with several; default: every entry, in
        order (the first with frames and an image key is read). See
        :mod:`tomodenoise.io.entries` for how :func:`~tomodenoise.io.read_scan` picks one.

    Returns
    -------
    RawScan
        Projections (``image_key == 0``), flats (``1``) and darks (``2``) from before and
        after the projections, angles of the projections in radians; ``timestamps``
        (seconds) and ``acquisition_index`` of the projections when the file has them
        (see the module docstring), else None; ``attrs["timestamps"]`` and
        ``attrs["acquisition_index"]`` name their datasets.

    Raises
    ------
    ScanError
        Missing or unreadable file, no NXtomo data / image key / rotation angle found,
        lengths that do not match, no projections, NaN/inf, unusable flats, an unusable
        ``timestamps_path``.
    """
    p = Path(path)
    with open_h5(p) as f:
        fr = _frames(f, p, data_path, image_key_path, entry)
        rows = check_slices(slices, fr.ds.shape[1], p, fr.data_path)
        if angles_file is not None:
            angles_name, all_angles = str(angles_file), load_angles(angles_file, angles_unit)
        else:
            angles_name, all_angles = _read_angles(f, p, fr, angles_path, angles_unit)
        angles = _projection_angles(all_angles, fr, p, angles_name)
        dpath, ds = fr.data_path, fr.ds
        names = {"projections": f"{dpath} (image_key 0)", "angles": angles_name,
                 "flats": f"{dpath} (image_key 1)", "darks": f"{dpath} (image_key 2)"}
        proj = read_frames(ds, fr.i_proj, rows, p, dpath)
        full_shape = tuple(ds.shape[1:])
        if flats is not None:
            flats, names["flats"] = read_field(flats, "flats", full_shape, rows)
        else:
            flats = read_frames(ds, fr.i_flat, rows, p, dpath) if fr.i_flat.size else None
        if darks is not None:
            darks, names["darks"] = read_field(darks, "darks", full_shape, rows)
        else:
            darks = read_frames(ds, fr.i_dark, rows, p, dpath) if fr.i_dark.size else None
        saturation, dtype = saturation_of(ds.dtype), str(ds.dtype)
        timestamps, timestamps_name = _frame_times(f, fr.entry, ds, fr.i_proj, p, timestamps_path)
        order, order_name = _acquisition_index(f, fr.entry, ds, fr.i_proj, p)
    check_scan_arrays(p, proj, angles, flats, darks, names=names, saturation=saturation)
    attrs = {
        **_frames_attrs(fr, angles_name, rows),
        **fields_attrs(flats, darks, names),
        "dtype": dtype,
        "timestamps": timestamps_name,
        "acquisition_index": order_name,
    }
    return RawScan(proj, flats, darks, angles, source=str(p), preprocessed=False, attrs=attrs,
                   timestamps=timestamps, acquisition_index=order)


@dataclass(frozen=True)
class _Frames:
    """The frames of an NXtomo entry: where they are, and which are projections, flats, darks."""

    entry: str
    data_path: str
    ds: h5py.Dataset
    key_path: str
    keys: np.ndarray

    @property
    def i_proj(self) -> np.ndarray:
        return np.flatnonzero(self.keys == 0)

    @property
    def i_flat(self) -> np.ndarray:
        return np.flatnonzero(self.keys == 1)

    @property
    def i_dark(self) -> np.ndarray:
        return np.flatnonzero(self.keys == 2)


def _frames(f: h5py.File, p: Path, data_path: str | None, image_key_path: str | None,
            entry: str | None) -> _Frames:
    """The first frame dataset with an image key (in ``entry`` when given; ``data_path`` and
    ``image_key_path`` when given), its image keys checked."""
    if data_path is not None:
        pairs = [("/" + data_path.strip("/").split("/", 1)[0], data_path)]
    else:
        pairs = [(e, c) for e in ([entry_path(entry)] if entry else entries(f)) for c in data_candidates(f, e)]
    tried = []
    for entry_found, cand in pairs:
        ds = get(f, cand)
        if not is_frames(ds):
            if data_path is not None:
                raise ScanError(p, data_path, "a 3-D (frame, z, det) dataset",
                                "no such dataset" if ds is None else f"shape {getattr(ds, 'shape', None)}")
            continue
        tried.append(cand)
        key_path = image_key_path or find_image_key(f, entry_found, cand, ds)
        if key_path is not None:
            return _Frames(entry_found, cand, ds, key_path, _image_keys(f, p, key_path, cand, ds.shape[0]))
    if tried:
        raise ScanError(p, tried[0], f"an image_key dataset ({tried[0].rsplit('/', 1)[0]}/image_key or "
                        "<entry>/instrument/detector/image_key) with one key per frame", "none",
                        hint="give its path as image_key_path")
    where = pairs[-1][0] if pairs else (entry_path(entry) if entry else None)
    raise ScanError(p, f"{where or '/entry'}/data/data", "an NXtomo entry: a 3-D (frame, z, det) 'data' dataset "
                    "in an NXdata or NXdetector group", "none", hint="give its path as data_path")


def _image_keys(f: h5py.File, p: Path, key_path: str, dpath: str, n: int) -> np.ndarray:
    """The ``n`` image keys at ``key_path`` as int64, checked: 0 to 3, at least one projection."""
    key_ds = get(f, key_path)
    if not isinstance(key_ds, h5py.Dataset):
        raise ScanError(p, key_path, f"an image_key dataset with {n} keys", "no such dataset")
    keys = np.asarray(key_ds[()]).reshape(-1)
    if keys.shape[0] != n or not np.issubdtype(keys.dtype, np.number):
        raise ScanError(p, key_path, f"{n} integer image keys (one per frame of {dpath})",
                        f"{keys.shape[0]} values of {keys.dtype}")
    keys = keys.astype(np.int64)
    unknown = np.setdiff1d(np.unique(keys), [0, 1, 2, 3])
    if unknown.size:
        raise ScanError(p, key_path, "image keys 0 (projection), 1 (flat), 2 (dark) or 3 (invalid)",
                        f"keys {unknown.tolist()}")
    if not (keys == 0).any():
        raise ScanError(p, key_path, "at least one projection (image_key 0)", "none")
    return keys


def _read_angles(f: h5py.File, p: Path, fr: _Frames, angles_path: str | None,
                 angles_unit: str) -> tuple[str, np.ndarray]:
    """(dataset, radians) of the rotation angle: ``angles_path``, else the one the search finds."""
    n, n_proj = fr.ds.shape[0], int(fr.i_proj.size)
    angles_name = angles_path or _find_angles(f, fr.entry, fr.data_path, (n, n_proj))
    if angles_name is None:
        raise ScanError(p, f"{fr.entry}/sample/rotation_angle",
                        f"a rotation angle dataset with {n} (one per frame) or {n_proj} values", "none",
                        hint="give its path as angles_path, or the angles in input.angles_file")
    a_ds = get(f, angles_name)
    if not isinstance(a_ds, h5py.Dataset):
        raise ScanError(p, angles_name, "a rotation angle dataset", "no such dataset")
    try:
        values = a_ds[()]
    except (OSError, TypeError, ValueError) as exc:
        raise ScanError(p, angles_name, "readable rotation angles", exc) from None
    unit = parse_unit(attr_str(a_ds, "units"), p, angles_name)
    return angles_name, to_radians(values, unit or angles_unit, p, angles_name, from_attribute=unit is not None)


def _projection_angles(all_angles: np.ndarray, fr: _Frames, p: Path, angles_name: str) -> np.ndarray:
    """The projections' angles from one angle per frame or one per projection."""
    n, i_proj = fr.ds.shape[0], fr.i_proj
    if all_angles.shape[0] == n:
        return all_angles[i_proj]
    if all_angles.shape[0] == i_proj.size:
        return all_angles
    raise ScanError(p, angles_name, f"{n} angles (one per frame) or {i_proj.size} (one per projection)",
                    f"{all_angles.shape[0]} angles")


def _frames_attrs(fr: _Frames, angles_name: str, rows: slice) -> dict[str, object]:
    """The scan attributes of an NXtomo read: where its datasets are, and its frame counts."""
    i_flat, i_dark = fr.i_flat, fr.i_dark
    first, last = int(fr.i_proj[0]), int(fr.i_proj[-1])
    return {
        "format": "nexus",
        "entry": fr.entry,
        "data_path": fr.data_path,
        "image_key_path": fr.key_path,
        "angles_path": angles_name,
        "rows": [int(rows.start), int(rows.stop)],
        "n_flats_before": int((i_flat < first).sum()),
        "n_flats_after": int((i_flat > last).sum()),
        "n_darks_before": int((i_dark < first).sum()),
        "n_darks_after": int((i_dark > last).sum()),
        "n_invalid": int((fr.keys == 3).sum()),
    }
