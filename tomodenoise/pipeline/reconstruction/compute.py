"""The work of one reconstruction task: a whole :class:`ChunkGroup`.

Per task, not per chunk: the store's metadata, the stage key, the device check and the
angles are read once; one ASTRA set-up (:class:`tomodenoise.recon.SliceReconstructor`) per
split (and time step) is built once and reused for every slab; each slab's sinogram is read
once for all the splits of that slab in the group. Chunks are computed, written (whole Zarr
chunks) and marked done one after the other, so a task holds one sinogram slab and one
output slab at a time, and a killed task keeps the chunks it finished.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from ...config import RunConfig
from ...io.store import ScanStore
from ..keys import key_for
from ..integrity import checksum
from ..markers import Markers
from .chunks import Chunk, ChunkGroup

__all__ = ["reconstruct_group"]


def _reconstructor(cfg: RunConfig, angles: np.ndarray, width: int, geom: dict):
    from ...recon import fbp_reconstructor, sirt_reconstructor

    kw = dict(center=geom["center"], n_pixels=geom["n_pixels"], use_gpu=cfg.recon.use_gpu)
    if cfg.recon.algorithm == "fbp":
        return fbp_reconstructor(angles, width, filter=cfg.recon.filter, **kw)
    return sirt_reconstructor(angles, width, iterations=cfg.recon.iterations, **kw)


def reconstruct_group(store: ScanStore, cfg: RunConfig, group: ChunkGroup,
                      on_chunk: Callable[[Chunk], None] | None = None) -> ChunkGroup:
    """Reconstruct, write and mark done every chunk of ``group``; ``on_chunk(chunk)`` after each.

    Chunks that already have their completion marker (a retried task) are skipped.
    """
    from ...recon import gpu_available
    from ...splits import split_indices

    geom = store.attrs["geometry"]
    markers = Markers(store, "reconstruct", key_for(store, cfg, "reconstruct"))
    done = markers.names()
    device = "cuda" if cfg.recon.use_gpu != "no" and gpu_available() else "cpu"
    sinogram = store.array("sinogram")
    recon = store.array("recon", mode="r+")
    width = int(sinogram.shape[-1])
    step: dict = {}  # the time step being worked on: its angles, splits and ASTRA set-ups
    try:
        slabs = itertools.groupby(group.chunks, key=lambda ch: (ch.time, ch.channel, ch.z_start, ch.z_stop))
        for (t, c, z0, z1), chunks in slabs:
            if step.get("time") != t:  # chunks are ordered by time: set-ups of other steps are done with
                for r in step.get("recons", {}).values():
                    r.close()
                angles = store.angles_of(t)  # this step's own angles: splits within the step
                step = {"time": t, "angles": angles, "splits": split_indices(len(angles), cfg.splits.k),
                        "recons": {}}
            angles, splits, recons = step["angles"], step["splits"], step["recons"]
            chunks = [ch for ch in chunks if ch.marker not in done]
            if not chunks:
                continue
            slab = np.asarray(sinogram[t, c, z0:z1, : len(angles)], dtype=np.float32)
            if not np.all(np.isfinite(slab)):
                raise ValueError(f"sinogram of time {t}, channel {c}, z {z0}:{z1} contains NaN or inf")
            for chunk in chunks:
                idx = splits[chunk.split]
                if chunk.split not in recons:
                    recons[chunk.split] = _reconstructor(cfg, angles[idx], width, geom)
                data = np.asarray(recons[chunk.split].reconstruct(slab, rows=idx), dtype=np.float32)
                recon[chunk.region] = data
                markers.write(chunk.marker, z=[chunk.z_start, chunk.z_stop], device=device, crc=checksum(data))
                if on_chunk is not None:
                    on_chunk(chunk)
    finally:
        for r in step.get("recons", {}).values():
            r.close()
    return group

