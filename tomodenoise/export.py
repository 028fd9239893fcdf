"""Export a store's result for the viewers people use: multiscale OME-Zarr and TIFF stacks.

    <store>/export/<scan_id>_denoised.ome.zarr   OME-NGFF 0.4 image (napari, Fiji), a pyramid
    <store>/export/<scan_id>_fbp.ome.zarr        the FBP: the mean of the K split reconstructions
    <store>/export/<scan_id>_denoised.tif        ImageJ hyperstack, float32 (axes TZCYX or less)
    <store>/export/<scan_id>_fbp.tif

Time and channel axes of size 1 are left out (a static scan is a plain ``zyx`` volume).
Everything is read and written in z-slabs: level 0 from the store (the TIFF pages come from
the same read), each lower level from the level above, so no volume is ever held whole.
The OME-Zarr pyramid halves y and x (and z while the volume has at least as many slices as
the slice's shorter side, so thin slabs keep every slice) until the shorter side of a slice
is at most :data:`MIN_SIDE` pixels; each level is the mean of 2x2 (2x2x2) blocks, an odd
last row/column/slice dropped. Each file is written under a temporary name and renamed, so
a re-run replaces the previous export and an interrupted one leaves none half-written.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .io.store import ScanStore, z_slabs
from .logs import summary

log = logging.getLogger("tomodenoise.export")

FORMATS = ("ome-zarr", "tiff")
#: the pyramid stops once the shorter side of a slice is at most this many pixels
MIN_SIDE = 64
#: y/x chunk side of the OME-Zarr arrays (z: the store's z-chunk)
XY_CHUNK = 512
NGFF_VERSION = "0.4"

_UNITS = {  # spellings seen in files -> the UDUNITS-2 names NGFF 0.4 expects
    "m": "meter", "meter": "meter", "metre": "meter",
    "mm": "millimeter", "millimeter": "millimeter", "millimetre": "millimeter",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer", "microns": "micrometer",
    "micrometer": "micrometer", "micrometre": "micrometer",
    "nm": "nanometer", "nanometer": "nanometer", "nanometre": "nanometer",
    "angstrom": "angstrom", "å": "angstrom",
}
_IMAGEJ_UNITS = {"meter": "m", "millimeter": "mm", "micrometer": "micron", "nanometer": "nm", "angstrom": "angstrom"}


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


def _time_step(store: ScanStore, n_time: int) -> tuple[float, str | None]:
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


def _channel_labels(store: ScanStore, n: int) -> list[str]:
    try:
        values = store.array("channel")[:]
        unit = dict(store.array("channel").attrs).get("units")
    except Exception:  # noqa: BLE001
        return [str(i) for i in range(n)]
    return [f"{v:g} {unit}" if unit and isinstance(v, (float, np.floating)) else str(v) for v in values.tolist()]


# --- the pyramid -----------------------------------------------------------------------------
def halve(a: np.ndarray, z: bool) -> np.ndarray:
    """Mean of 2x2 blocks in y, x (2x2x2 with ``z``) of ``a`` ``(..., z, y, x)``; odd remainders dropped."""
    *lead, nz, ny, nx = a.shape
    mz = 2 if z else 1
    a = a[..., : nz // mz * mz, : ny // 2 * 2, : nx // 2 * 2]
    b = a.reshape(*lead, nz // mz, mz, ny // 2, 2, nx // 2, 2)
    return b.mean(axis=(-5, -3, -1), dtype=np.float64).astype(np.float32)


def pyramid(nz: int, ny: int, nx: int, min_side: int | None = None) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Levels as ``((nz, ny, nx), (factor_z, factor_y, factor_x))``, level 0 first (``min_side``: :data:`MIN_SIDE`)."""
    min_side = MIN_SIDE if min_side is None else min_side
    levels = [((nz, ny, nx), (1, 1, 1))]
    while min(ny, nx) > min_side:
        zdown = nz >= 2 and nz >= min(ny, nx)
        fz, fy, fx = levels[-1][1]
        nz, ny, nx = (nz // 2 if zdown else nz), ny // 2, nx // 2
        levels.append(((nz, ny, nx), (fz * (2 if zdown else 1), fy * 2, fx * 2)))
    return levels


def ngff_metadata(name: str, keep_t: bool, keep_c: bool, levels, voxel: tuple[float, str | None],
                  dt: tuple[float, str | None]) -> dict[str, Any]:
    """The ``multiscales`` attribute (OME-NGFF 0.4) of an image with these levels."""
    axes: list[dict[str, Any]] = []
    lead: list[float] = []
    if keep_t:
        axes.append({"name": "t", "type": "time", **({"unit": dt[1]} if dt[1] else {})})
        lead.append(dt[0])
    if keep_c:
        axes.append({"name": "c", "type": "channel"})
        lead.append(1.0)
    size, unit = voxel
    for ax in "zyx":
        axes.append({"name": ax, "type": "space", **({"unit": unit} if unit else {})})
    datasets = [{"path": str(i), "coordinateTransformations": [
        {"type": "scale", "scale": lead + [float(size * f) for f in factors]}]} for i, (_, factors) in enumerate(levels)]
    return {"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets,
            "type": "mean", "metadata": {"method": "tomodenoise.export.halve",
                                         "description": "mean of 2x2 (y, x) or 2x2x2 (z, y, x) blocks"}}


# --- writers -----------------------------------------------------------------------------------
class _OmeZarr:
    """An OME-Zarr image (Zarr format 2, ``/`` chunk keys) being written level by level."""

    def __init__(self, path: Path, vol: Volume, z_chunk: int) -> None:
        import numcodecs
        import zarr

        nt, nc, nz, ny, nx = vol.shape
        self.keep_t, self.keep_c = nt > 1, nc > 1
        self.levels = pyramid(nz, ny, nx)
        self.z_chunk = max(1, min(z_chunk, nz))
        self.group = zarr.open_group(str(path), mode="w", zarr_format=2)
        self.arrays = []
        for i, ((lz, ly, lx), _) in enumerate(self.levels):
            lead = ([nt] if self.keep_t else []) + ([nc] if self.keep_c else [])
            chunks = [1] * len(lead) + [min(self.z_chunk, lz), min(XY_CHUNK, ly), min(XY_CHUNK, lx)]
            self.arrays.append(self.group.create_array(
                str(i), shape=tuple(lead + [lz, ly, lx]), chunks=tuple(chunks), dtype="float32", fill_value=0.0,
                compressors=numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
                chunk_key_encoding={"name": "v2", "separator": "/"}))
        self.nt, self.nc = nt, nc
        self.lo = np.full(nc, np.inf)
        self.hi = np.full(nc, -np.inf)

    def _index(self, t: int, c: int | slice, zs: slice) -> tuple:
        return tuple(([t] if self.keep_t else []) + ([c] if self.keep_c else []) + [zs])

    def put(self, level: int, t: int, zs: slice, data: np.ndarray, c: int | None = None) -> None:
        """Write ``data`` ``(channel, z, y, x)`` (one channel ``(z, y, x)`` when ``c`` is given)."""
        if c is None:
            if level == 0:
                finite = np.where(np.isfinite(data), data, np.nan)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slab
                    self.lo = np.fmin(self.lo, np.nanmin(finite, axis=(1, 2, 3)))
                    self.hi = np.fmax(self.hi, np.nanmax(finite, axis=(1, 2, 3)))
            self.arrays[level][self._index(t, slice(None), zs)] = data if self.keep_c else data[0]
        else:
            self.arrays[level][self._index(t, c, zs)] = data

    def get(self, level: int, t: int, c: int, zs: slice) -> np.ndarray:
        return np.asarray(self.arrays[level][self._index(t, c, zs)])

    def build_lower_levels(self) -> None:
        """Each level from the one above, one output z-chunk of one (time, channel) at a time."""
        for level in range(1, len(self.levels)):
            (nz, _, _), f = self.levels[level]
            zdown = f[0] != self.levels[level - 1][1][0]
            for t in range(self.nt):
                for c in range(self.nc):
                    for zs in z_slabs(nz, self.z_chunk):
                        src = slice(2 * zs.start, 2 * zs.stop) if zdown else zs
                        self.put(level, t, zs, halve(self.get(level - 1, t, c, src), zdown), c=c)

    def finish(self, name: str, voxel, dt, labels: list[str]) -> None:
        self.group.attrs["multiscales"] = [ngff_metadata(name, self.keep_t, self.keep_c,
                                                         self.levels, voxel, dt)]
        small = np.asarray(self.arrays[-1][...], dtype=np.float64)
        small = small.reshape((self.nt, self.nc) + small.shape[-3:])
        channels = []
        for c in range(self.nc):
            v = small[:, c][np.isfinite(small[:, c])]
            start, end = (np.percentile(v, [0.5, 99.5]).tolist() if v.size else [0.0, 1.0])
            lo = float(self.lo[c]) if np.isfinite(self.lo[c]) else start
            hi = float(self.hi[c]) if np.isfinite(self.hi[c]) else end
            channels.append({"label": labels[c] if c < len(labels) else str(c), "color": "FFFFFF", "active": True,
                             "coefficient": 1.0, "family": "linear", "inverted": False,
                             "window": {"min": lo, "max": hi, "start": float(start), "end": float(end)}})
        nz = self.levels[0][0][0]
        self.group.attrs["omero"] = {"name": name, "version": NGFF_VERSION, "channels": channels,
                                     "rdefs": {"model": "greyscale", "defaultT": 0, "defaultZ": nz // 2}}


def _tiff_options(vol: Volume, voxel, dt) -> dict[str, Any]:
    nt, nc, nz, ny, nx = vol.shape
    axes = ("T" if nt > 1 else "") + "Z" + ("C" if nc > 1 else "") + "YX"
    shape = tuple(n for n, a in zip((nt, nz, nc, ny, nx), "TZCYX") if a in axes)
    meta: dict[str, Any] = {"axes": axes}
    opts: dict[str, Any] = {"shape": shape, "dtype": "float32", "imagej": True, "metadata": meta}
    size, unit = voxel
    if unit:
        meta.update(spacing=size, unit=_IMAGEJ_UNITS.get(unit, unit))
        opts["resolution"] = (1.0 / size, 1.0 / size)
    if dt[1]:
        meta["finterval"] = dt[0]
    return opts


# --- the export ----------------------------------------------------------------------------------
def export(store_path: str | Path, formats: Sequence[str] = FORMATS, out: str | Path | None = None) -> list[Path]:
    """Write the store's denoised volume and FBP as OME-Zarr and/or TIFF; return the paths written.

    ``store_path``: the ``<out>/<scan_id>/`` folder of a run; ``formats``: ``"ome-zarr"``,
    ``"tiff"``; ``out``: the folder to write into (default ``<store>/export/``).
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    store = open_result(store_path)
    if not formats:
        return []
    attrs = store.attrs
    scan_id = str(attrs.get("scan_id") or store.root.name)
    out_dir = Path(out).expanduser() if out else store.root / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    voxel = voxel_size(attrs)
    written: list[Path] = []
    vols = volumes(store)
    for vol in vols:
        dt = _time_step(store, vol.shape[0])
        labels = _channel_labels(store, vol.shape[1])
        written += _export_volume(store, vol, formats, out_dir, f"{scan_id}_{vol.name}", voxel, dt, labels)
    summary(log, f"export: {', '.join(formats)} of {' and '.join(v.name for v in vols)} -> {out_dir}/")
    for p in written:
        log.info("export: wrote %s", p)
    return written


def _export_volume(store: ScanStore, vol: Volume, formats: Sequence[str], out_dir: Path, stem: str, voxel, dt,
                   labels: list[str]) -> list[Path]:
    nt, nc, nz, ny, nx = vol.shape
    log.info("export: %s (time %d, channel %d, z %d, y %d, x %d), voxel %g %s", stem, nt, nc, nz, ny, nx,
             voxel[0], voxel[1] or "(no unit)")
    zarr_path, tif_path = out_dir / f"{stem}.ome.zarr", out_dir / f"{stem}.tif"
    zarr_tmp, tif_tmp = _partial(zarr_path), _partial(tif_path)
    z_chunk = store.z_chunk
    image = _OmeZarr(zarr_tmp, vol, z_chunk) if "ome-zarr" in formats else None

    def pages() -> Iterator[np.ndarray]:
        """Level 0, read once: each slab goes to the OME-Zarr and, page by page, to the TIFF."""
        for t in range(nt):
            for zs in z_slabs(nz, z_chunk):
                slab = vol.read(t, zs)  # (channel, z, y, x)
                if image is not None:
                    image.put(0, t, zs, slab)
                for z in range(slab.shape[1]):
                    for c in range(nc):
                        yield slab[c, z]

    if "tiff" in formats:
        import tifffile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # > 4 GiB: ImageJ's own layout ("truncating")
            tifffile.imwrite(tif_tmp, pages(), **_tiff_options(vol, voxel, dt))
    else:
        _drain(pages())
    written = []
    if image is not None:
        image.build_lower_levels()
        image.finish(stem, voxel, dt, labels)
        _replace(zarr_tmp, zarr_path)
        written.append(zarr_path)
        log.info("export: %s: %d levels, %s", zarr_path.name, len(image.levels),
                 ", ".join("x".join(map(str, s)) for s, _ in image.levels))
    if "tiff" in formats:
        _replace(tif_tmp, tif_path)
        written.append(tif_path)
    return written


def _drain(it: Iterable[Any]) -> None:
    for _ in it:
        pass


def _partial(path: Path) -> Path:
    tmp = path.with_name(path.name + ".partial")
    _remove(tmp)
    return tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace(tmp: Path, final: Path) -> None:
    if tmp.is_dir():
        _remove(final)
        tmp.rename(final)
    else:
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
