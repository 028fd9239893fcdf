"""XRD-CT and pencil-beam scans.

XRD-CT: a pencil-beam scan (rotation x translation per slice) whose diffraction patterns are
already reduced to C channels (q or 2-theta bins): C sinograms of diffracted intensity, linear
in the amount of each phase (no flats, no -log). Layout read and written here (NeXus style)::

    /entry                 NXentry, definition = "NXxrdct"
    /entry/xrdct           NXdata, signal = "data", axes = [<channel>, "z", "rotation_angle", "translation"]
        data               (channel, z, angle, translation) float32
        <channel>          (channel,) e.g. q [1/angstrom] or tth [deg]
        rotation_angle     (angle,) degrees (any order, e.g. unsorted over a full turn)
        translation        (translation,)

Any NXdata group with a 4-D signal, a channel-like and an angle-like axis is read, in the
order its ``axes`` attribute names; so is a Zarr group with a 4-D ``data`` array, an angle
array and a channel array.

Pencil-beam absorption (:func:`read_pencil_beam`): a NeXus entry with frames ``(angle, row,
translation)``, the rotation angles, translation positions and a monitor, without
``image_key``: read as transmission ``data / monitor``, normalised per angle by the air at
the translation ends.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import RawScan, check_scan_arrays, check_slices, parse_unit, to_radians
from .errors import ScanError
from .hdf5 import created, entry_path

__all__ = ["find_nxdata", "is_pencil_beam", "is_xrdct", "pencil_entry", "read_pencil_beam", "read_xrdct", "write_xrdct"]

log = logging.getLogger(__name__)

_ANGLE_NAMES = ("rotation_angle", "theta", "angle", "omega", "rot", "rotation")
_CHANNEL_NAMES = ("q", "tth", "two_theta", "2theta", "channel", "energy", "d")
_MONITOR_NAMES = ("monitor", "i0", "mon", "it", "ic")
_POSITION_NAMES = ("x", "y", "x_position", "y_position", "translation", "tx", "ty", "sample_x", "sample_y")
#: Per angle, the air transmission is this percentile of ``data / monitor`` over the translations.
AIR_PERCENTILE = 95.0


def _attr(obj: Any, name: str) -> Any:
    v = obj.attrs.get(name)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return [x.decode() if isinstance(x, bytes) else str(x) for x in v.reshape(-1)]
    return v


def write_xrdct(path: str | PathLike[str], sinograms: np.ndarray, angles_deg: np.ndarray, channels: np.ndarray, *,
                channel_name: str = "q", channel_unit: str = "1/angstrom", translation: np.ndarray | None = None,
                overwrite: bool = True) -> Path:
    """Write XRD-CT sinograms ``(channel, z, angle, translation)`` in the layout above.

    Written under a temporary name and renamed when complete.
    """
    p = Path(path)
    sino = np.asarray(sinograms, dtype=np.float32)
    ang = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    ch = np.asarray(channels, dtype=np.float64).reshape(-1)
    if sino.ndim != 4 or sino.shape[0] != ch.size or sino.shape[2] != ang.size:
        raise ValueError(f"sinograms must be (channel, z, angle, translation) with {ch.size} channels and "
                         f"{ang.size} angles, got shape {sino.shape}")
    tr = np.arange(sino.shape[3], dtype=np.float64) if translation is None else np.asarray(translation, dtype=np.float64)
    with created(p, overwrite) as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e.create_dataset("definition", data="NXxrdct")
        g = e.create_group("xrdct")
        g.attrs.update({"NX_class": "NXdata", "signal": "data",
                        "axes": [channel_name, "z", "rotation_angle", "translation"]})
        d = g.create_dataset("data", data=sino, chunks=(1, 1, ang.size, sino.shape[3]))
        d.attrs["interpretation"] = "diffracted intensity per channel"
        c = g.create_dataset(channel_name, data=ch)
        c.attrs["units"] = channel_unit
        g.create_dataset("z", data=np.arange(sino.shape[1]))
        a = g.create_dataset("rotation_angle", data=ang)
        a.attrs["units"] = "degrees"
        t = g.create_dataset("translation", data=tr)
        t.attrs["units"] = "pixel"
    return p


def _role(name: str) -> str | None:
    n = name.lower()
    if n in _ANGLE_NAMES:
        return "angle"
    if n in _CHANNEL_NAMES:
        return "channel"
    if n in ("z", "row", "rows", "y_slice", "slice"):
        return "z"
    if n in ("translation", "x", "y", "t", "det", "position"):
        return "translation"
    return None


def find_nxdata(f: Any, entry: str | None = None) -> tuple[str, list[str]] | None:
    """The first NXdata group (its path without the leading slash, and its axes) with a 4-D
    signal whose axes include a channel and an angle; in ``entry`` only when given."""
    found: list[tuple[str, list[str]]] = []
    top = f
    prefix = ""
    if entry is not None:
        top = f.get(entry_path(entry))
        if top is None or not hasattr(top, "visititems"):
            return None
        prefix = entry_path(entry).lstrip("/") + "/"

    def visit(name: str, obj: Any) -> None:
        if found or _attr(obj, "NX_class") != "NXdata":
            return
        sig = _attr(obj, "signal")
        axes = _attr(obj, "axes")
        if not sig or sig not in obj or getattr(obj[sig], "ndim", 0) != 4:
            return
        axes = [axes] if isinstance(axes, str) else list(axes or [])
        roles = [_role(a) for a in axes]
        if len(axes) == 4 and "angle" in roles and "channel" in roles:
            found.append((prefix + name, axes))

    top.visititems(lambda n, o: visit(n, o) if hasattr(o, "attrs") and not hasattr(o, "shape") else None)
    return found[0] if found else None


def is_xrdct(path: str | PathLike[str]) -> bool:
    """True for an HDF5 file with an XRD-CT NXdata group, or a Zarr store with 4-D ``data``."""
    p = Path(path)
    if p.is_dir():
        try:
            import zarr

            g = zarr.open_group(str(p), mode="r")
            return "data" in g and g["data"].ndim == 4 and _zarr_key(g, _CHANNEL_NAMES) is not None
        except Exception:
            return False
    try:
        with h5py.File(p, "r") as f:
            return find_nxdata(f) is not None
    except OSError:
        return False


def _zarr_key(g: Any, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in g), None)


def _finish(path: Path, data: np.ndarray, order: list[str], angles: Any, angle_unit: Any, channels: Any,
            channel_name: str, channel_unit: Any, slices: Any, names: dict[str, str], angles_unit: str,
            fmt: str) -> RawScan:
    roles = [_role(a) for a in order]
    if sorted(r or "?" for r in roles) != ["angle", "channel", "translation", "z"]:
        raise ScanError(path, names["projections"], "axes naming one channel, z, rotation-angle and translation axis",
                        f"axes {order}")
    arr = np.transpose(np.asarray(data), [roles.index(r) for r in ("channel", "angle", "z", "translation")])
    rows = check_slices(slices, arr.shape[2], path, names["projections"])
    arr = np.ascontiguousarray(arr[:, :, rows], dtype=np.float32)
    unit = parse_unit(angle_unit, path, names["angles"])
    rad = to_radians(np.asarray(angles), unit or angles_unit, path, names["angles"], from_attribute=unit is not None)
    c, a, z, t = arr.shape
    view = np.transpose(arr, (1, 0, 2, 3)).reshape(a, c * z, t)  # the reader checks on (angle, channel*z, det)
    check_scan_arrays(path, view, rad, names=names, preprocessed=True)
    return RawScan(arr, None, None, rad, source=str(path), preprocessed=True, channels=np.asarray(channels),
                   attrs={"format": fmt, "modality": "xrdct", "channel_name": channel_name,
                          "channel_unit": str(channel_unit or ""), "rows": [rows.start, rows.stop],
                          **{f"{k}_dataset": v for k, v in names.items()}})


def read_xrdct(path: str | PathLike[str], *, angles_unit: str = "deg", slices: Any = None, entry: str | None = None,
               **_: Any) -> RawScan:
    """Read XRD-CT sinograms (HDF5/NeXus NXdata or Zarr) as ``(channel, angle, z, det)``.

    ``entry``: look in this entry (``/entry3``) of an HDF5 file only (default: the whole file).

    Raises
    ------
    ScanError
        No XRD-CT data, axes that cannot be told apart, angles that do not match, NaN/inf.
    """
    p = Path(path)
    if p.is_dir():
        import zarr

        g = zarr.open_group(str(p), mode="r")
        if "data" not in g or g["data"].ndim != 4:
            raise ScanError(p, "data", "a 4-D (channel, z, angle, translation) XRD-CT array", "none")
        ak, ck = _zarr_key(g, _ANGLE_NAMES), _zarr_key(g, _CHANNEL_NAMES)
        if ak is None or ck is None:
            raise ScanError(p, None, f"an angle array ({'/'.join(_ANGLE_NAMES)}) and a channel array "
                            f"({'/'.join(_CHANNEL_NAMES)}) beside data", f"arrays {sorted(g.array_keys())}")
        order = list(g["data"].attrs.get("axes", [ck, "z", "rotation_angle", "translation"]))
        return _finish(p, g["data"][:], order, g[ak][:], g[ak].attrs.get("units"), g[ck][:], ck,
                       g[ck].attrs.get("units"), slices, {"projections": "data", "angles": ak}, angles_unit, "xrdct")
    with h5py.File(p, "r") as f:
        hit = find_nxdata(f, entry)
        if hit is None:
            raise ScanError(p, entry_path(entry) if entry else None,
                            "an NXdata group with a 4-D signal and channel and rotation-angle axes", "none")
        gname, axes = hit
        g = f[gname]
        sig = _attr(g, "signal")
        roles = [_role(a) for a in axes]
        aname, cname = axes[roles.index("angle")], axes[roles.index("channel")]
        for n in (aname, cname):
            if n not in g:
                raise ScanError(p, f"/{gname}/{n}", "the axis dataset named in the axes attribute", "missing")
        top = gname.split("/", 1)[0]
        in_entry = "/" in gname and _attr(f[top], "NX_class") == "NXentry"
        raw = _finish(p, g[sig][()], axes, g[aname][()], _attr(g[aname], "units"), g[cname][()], cname,
                      _attr(g[cname], "units"), slices,
                      {"projections": f"/{gname}/{sig}", "angles": f"/{gname}/{aname}"}, angles_unit, "xrdct")
    if in_entry:
        raw.attrs["entry"] = f"/{top}"
    return raw


# --- pencil-beam absorption -------------------------------------------------------------------
def pencil_entry(f: Any, entry: str | None = None) -> dict[str, str] | None:
    """Dataset paths of a pencil-beam entry: 3-D data, angles, translation positions and a monitor;
    no image_key, not an NXtomo definition. In ``entry`` only when given."""
    names = list(f) if entry is None else [entry_path(entry).lstrip("/")]
    for ename in names:
        if ename not in f:
            continue
        e = f[ename]
        if not hasattr(e, "keys") or _attr(e, "NX_class") not in ("NXentry", None):
            continue
        found: dict[str, str] = {}

        def visit(name: str, obj: Any) -> None:
            leaf = name.rsplit("/", 1)[-1].lower()
            if not hasattr(obj, "shape"):
                if _attr(obj, "NX_class") == "NXmonitor" and "data" in obj:
                    found.setdefault("monitor", f"/{ename}/{name}/data")
                return
            if leaf == "image_key":
                found["image_key"] = name
            elif obj.ndim == 3 and "data" not in found and leaf == "data":
                found["data"] = f"/{ename}/{name}"
            elif obj.ndim == 1 and leaf in _ANGLE_NAMES:
                found.setdefault("angles", f"/{ename}/{name}")
            elif obj.ndim >= 1 and leaf in _MONITOR_NAMES:
                found.setdefault("monitor", f"/{ename}/{name}")
            elif obj.ndim >= 1 and leaf in _POSITION_NAMES:
                found.setdefault("positions", f"/{ename}/{name}")

        definition = e.get("definition")
        if definition is not None and b"NXtomo" in np.asarray(definition[()]).tobytes():
            continue
        e.visititems(visit)
        if "image_key" not in found and {"data", "angles", "monitor", "positions"} <= set(found):
            found["entry"] = f"/{ename}"
            return found
    return None


def is_pencil_beam(path: str | PathLike[str]) -> bool:
    """True for a NeXus file with a pencil-beam absorption entry (see the module docstring)."""
    try:
        with h5py.File(Path(path), "r") as f:
            return pencil_entry(f) is not None
    except OSError:
        return False


def read_pencil_beam(path: str | PathLike[str], *, angles_unit: str = "deg", slices: Any = None,
                     entry: str | None = None, **_: Any) -> RawScan:
    """A pencil-beam absorption scan as transmission ``(angle, z, det)`` (no flats needed).

    transmission = data / monitor (a monitor value per frame, or per point), divided per angle
    by the air: the :data:`AIR_PERCENTILE` percentile over the translations (the beam passes
    beside the sample at the ends of each translation). ``entry``: read this entry (``/entry2``)
    of a file with several (default: the first pencil-beam entry).
    """
    p = Path(path)
    with h5py.File(p, "r") as f:
        paths = pencil_entry(f, entry)
        if paths is None:
            raise ScanError(p, entry_path(entry) if entry else None, "a NeXus pencil-beam entry: (angle, row, "
                            "translation) data, rotation angles and a monitor, without image_key", "none")
        ds = f[paths["data"]]
        rows = check_slices(slices, ds.shape[1], p, paths["data"])
        data = np.asarray(ds[:, rows], dtype=np.float64)
        mon = np.asarray(f[paths["monitor"]][()], dtype=np.float64)
        angles = f[paths["angles"]][()]
        unit = parse_unit(_attr(f[paths["angles"]], "units"), p, paths["angles"])
    if mon.shape == data.shape[:1] or mon.size == data.shape[0]:
        mon = mon.reshape(-1, 1, 1)
    elif mon.shape == ds.shape:
        mon = mon[:, rows]
    else:
        raise ScanError(p, paths["monitor"], f"one monitor value per frame ({data.shape[0]}) or per point",
                        f"shape {mon.shape}")
    if not np.all(np.isfinite(mon)) or np.any(mon <= 0):
        raise ScanError(p, paths["monitor"], "positive monitor values", "zero, negative or NaN values",
                        hint="check that the monitor dataset holds the incident-beam counts")
    trans = data / mon
    air = np.percentile(trans, AIR_PERCENTILE, axis=2, keepdims=True)
    air[air <= 0] = 1.0
    trans = (trans / air).astype(np.float32)
    rad = to_radians(angles, unit or angles_unit, p, paths["angles"], from_attribute=unit is not None)
    check_scan_arrays(p, trans, rad, names={"projections": paths["data"], "angles": paths["angles"]}, preprocessed=True)
    log.info("read %s entry %s as a pencil-beam scan: transmission = data / monitor (%s), normalised to the air "
             "at the translation ends (no flats)", p, paths["entry"], paths["monitor"])
    return RawScan(trans, None, None, rad, source=str(p), preprocessed=False,
                   attrs={"format": "pencil", "entry": paths["entry"], "projections_dataset": paths["data"],
                          "angles_dataset": paths["angles"], "monitor_dataset": paths["monitor"],
                          "rows": [rows.start, rows.stop]})
