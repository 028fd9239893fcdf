"""What a store offers for export: its volumes, read slab by slab, and their metadata."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io.store import ScanStore

log = logging.getLogger("tomodenoise.export")

_UNITS = {  # spellings seen in files -> the UDUNITS-2 names NGFF 0.4 expects
    "m": "meter", "meter": "meter", "metre": "meter",
    "mm": "millimeter", "millimeter": "millimeter", "millimetre": "millimeter",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer", "microns": "micrometer",
    "micrometer": "micrometer", "micrometre": "micrometer",
    "nm": "nanometer", "nanometer": "nanometer", "nanometre": "nanometer",
    "angstrom": "angstrom", "å": "angstrom",
}


@dataclass
class Volume:
    """One exportable volume of a store, read slab by slab as ``(channel, z, y, x)`` float32."""

    name: str  # "denoised" | "fbp"
    shape: tuple[int, int, int, int, int]  # (time, channel, z, y, x)
    read: Callable[[int, slice], np.ndarray]  # (t, z-slab) -> (channel, z, y, x)


# --- opening the store ---------------------------------------------------------------------
def open_result(path: str | Path) -> ScanStore:
    """The store at ``path`` (``<out>/<scan_id>/``, or its ``scan.zarr``) if it holds a denoised volume.

    Raises ``ValueError`` (one sentence) when ``path`` is not a store or has no complete denoised volume.
    """
    p = Path(path).expanduser()
    if p.name == "scan.zarr" and (p / "zarr.json").exists():
        p = p.parent
    store = ScanStore(p)
    if not store.exists():
        raise ValueError(f"{p} is not a tomodenoise store (no scan.zarr in it): give the <out>/<scan_id>/ folder "
                         "that `tomodenoise run` wrote")
    import zarr

    group = zarr.open_group(str(store.zarr_path), mode="r")
    if "denoised" not in group or not store.stage_done("denoise"):
        raise ValueError(f"{p} has no denoised volume yet: run `tomodenoise run` first")
    return store


def volumes(store: ScanStore) -> list[Volume]:
    """The denoised volume and, when the store has the split reconstructions, the FBP (their mean)."""
    import zarr

    group = zarr.open_group(str(store.zarr_path), mode="r")
    den = group["denoised"]
    out = [Volume("denoised", tuple(den.shape), lambda t, zs, a=den: np.asarray(a[t, :, zs], dtype=np.float32))]
    if "recon" in group and store.stage_done("reconstruct"):
        rec = group["recon"]

        def read_fbp(t: int, zs: slice, a=rec) -> np.ndarray:
            return np.asarray(a[:, t, :, zs], dtype=np.float32).mean(axis=0, dtype=np.float64).astype(np.float32)

        out.append(Volume("fbp", tuple(rec.shape[1:]), read_fbp))
    else:
        log.info("%s: no complete split reconstructions, so no FBP to export", store.root)
    return out


# --- metadata from the store ---------------------------------------------------------------
def voxel_size(attrs: dict[str, Any]) -> tuple[float, str | None]:
    """The voxel side and its NGFF unit from the store's attributes; ``(1.0, None)`` when unknown.

    Looks for ``pixel_size``/``voxel_size`` at the top, in ``geometry`` and in ``reader``; the
    value may be a number (unit in ``<key>_unit(s)`` or ``units`` beside it) or
    ``{"value": ..., "units": ...}``. Reconstructions have the detector's pixel size.
    """
    for section in (attrs, attrs.get("geometry") or {}, attrs.get("reader") or {}):
        if not isinstance(section, dict):
            continue
        for key in ("voxel_size", "pixel_size"):
            v = section.get(key)
            unit = section.get(f"{key}_unit") or section.get(f"{key}_units") or section.get("units")
            if isinstance(v, dict):
                v, unit = v.get("value"), v.get("units") or v.get("unit") or unit
            if isinstance(v, (list, tuple)) and v:
                v = v[0]
            try:
                size = float(v)
            except (TypeError, ValueError):
                continue
            if np.isfinite(size) and size > 0:
                return size, _UNITS.get(str(unit).strip().lower()) if unit else None
    return 1.0, None


def time_step(store: ScanStore, n_time: int) -> tuple[float, str | None]:
    """Seconds between time steps when the store's time coordinate is in seconds and evenly spaced."""
    if n_time < 2:
        return 1.0, None
    try:
        t = np.asarray(store.array("time")[:], dtype=np.float64)
        unit = str(dict(store.array("time").attrs).get("units", "")).lower()
    except Exception:  # noqa: BLE001 - a store without a usable time coordinate: unit steps
        return 1.0, None
    d = np.diff(t)
    if unit in ("s", "second", "seconds") and d.size and np.all(d > 0) and np.ptp(d) <= 0.1 * d.mean():
        return float(d.mean()), "second"
    return 1.0, None


def channel_labels(store: ScanStore, n: int) -> list[str]:
    try:
        values = store.array("channel")[:]
        unit = dict(store.array("channel").attrs).get("units")
    except Exception:  # noqa: BLE001
        return [str(i) for i in range(n)]
    return [f"{v:g} {unit}" if unit and isinstance(v, (float, np.floating)) else str(v) for v in values.tolist()]

