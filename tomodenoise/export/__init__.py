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
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..io.store import ScanStore, z_slabs
from ..logs import summary
from .ngff import MIN_SIDE, NGFF_VERSION, OmeZarrWriter, halve, ngff_metadata, pyramid
from .source import Volume, channel_labels, open_result, time_step, volumes, voxel_size

__all__ = ["FORMATS", "MIN_SIDE", "NGFF_VERSION", "export", "halve", "ngff_metadata", "open_result", "pyramid",
           "volumes", "voxel_size"]

log = logging.getLogger("tomodenoise.export")

FORMATS = ("ome-zarr", "tiff")
_IMAGEJ_UNITS = {"meter": "m", "millimeter": "mm", "micrometer": "micron", "nanometer": "nm", "angstrom": "angstrom"}


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
        dt = time_step(store, vol.shape[0])
        labels = channel_labels(store, vol.shape[1])
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
    image = OmeZarrWriter(zarr_tmp, vol, z_chunk) if "ome-zarr" in formats else None

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
        # the run's quality verdict travels with the volume (a below-baseline result stays marked)
        image.group.attrs["tomodenoise"] = {"scan_id": store.root.name, "quality": store.attrs.get("quality")}
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
