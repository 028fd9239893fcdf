"""Multiscale OME-Zarr (OME-NGFF 0.4, Zarr format 2): the pyramid, its metadata and its writer."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..io.store import z_slabs
from .source import Volume

#: the pyramid stops once the shorter side of a slice is at most this many pixels
MIN_SIDE = 64
#: y/x chunk side of the OME-Zarr arrays (z: the store's z-chunk)
XY_CHUNK = 512
NGFF_VERSION = "0.4"


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
class OmeZarrWriter:
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
