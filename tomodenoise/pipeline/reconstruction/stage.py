"""The reconstruct stage: one FBP (or SIRT) per (split, time step, channel, z-slab) chunk.

The flow runs :func:`reconstruct_chunk` for every chunk of :func:`prepare_reconstruct` in
parallel on the Dask workers; :func:`reconstruct` runs them one after another. The splits of
a time step are taken within that step (its own angles, :meth:`ScanStore.angles_of`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore, z_slabs
from ..logs import show_progress
from .keys import invalidate_from, key_for, stage_current

__all__ = ["Chunk", "finish_reconstruct", "load_splits", "prepare_reconstruct", "recon_chunks", "reconstruct",
           "reconstruct_chunk", "reconstruct_current", "volume_shape"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """One unit of reconstruction work: one split, time step, channel and z-slab."""

    split: int
    time: int
    channel: int
    z_start: int
    z_stop: int

    @property
    def region(self) -> tuple[int, int, int, slice]:
        return (self.split, self.time, self.channel, slice(self.z_start, self.z_stop))


def recon_chunks(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """All reconstruction chunks: (split, time, channel, z-slab)."""
    ds = store.open()
    out = []
    for split in range(cfg.splits.k):
        for t in range(ds.sizes["time"]):
            for c in range(ds.sizes["channel"]):
                for zs in z_slabs(ds.sizes["z"], store.z_chunk):
                    out.append(Chunk(split, t, c, zs.start, zs.stop))
    return out


def reconstruct_current(store: ScanStore, cfg: RunConfig) -> bool:
    """True when the split reconstructions in the store were made with these settings."""
    return stage_current(store, "reconstruct", key_for(store, cfg, "reconstruct"))


# Chunk completion: one marker file per written chunk under progress/reconstruct-<key>/,
# created (atomically) only after the chunk's bytes are in the store. Markers of a key
# survive a killed run, so running again computes only the chunks without one; a new key
# (other input or settings) starts from no markers.
def _progress_dir(store: ScanStore, key: str) -> Path:
    return store.root / "progress" / f"reconstruct-{key}"


def _marker(chunk: Chunk) -> str:
    return f"s{chunk.split}-t{chunk.time}-c{chunk.channel}-z{chunk.z_start}.done"


def prepare_reconstruct(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """Create ``recon`` and list the chunks still to compute.

    Reconstructions made with other settings are forgotten (with everything downstream);
    chunks already written with these settings (an interrupted run) are kept.
    """
    key = key_for(store, cfg, "reconstruct")
    pdir = _progress_dir(store, key)
    n = int(store.attrs["geometry"]["n_pixels"])
    if not pdir.is_dir():
        invalidate_from(store, "reconstruct")
        if pdir.parent.is_dir():
            for old in pdir.parent.glob("reconstruct-*"):
                shutil.rmtree(old, ignore_errors=True)
        pdir.mkdir(parents=True)
    store.init_array("recon", {"split": cfg.splits.k, "y": n, "x": n})
    done = {p.name for p in pdir.glob("*.done")}
    todo = [c for c in recon_chunks(store, cfg) if _marker(c) not in done]
    if len(done):
        log.info("reconstruction: %d chunks already written, %d to compute", len(done), len(todo))
    return todo


def reconstruct_chunk(store: ScanStore, cfg: RunConfig, chunk: Chunk) -> Chunk:
    """Reconstruct one split of one z-slab, write it as one whole Zarr chunk, mark it done."""
    from ..recon import fbp, gpu_available, sirt
    from ..splits import split_indices

    geom = store.attrs["geometry"]
    angles = store.angles_of(chunk.time)  # this time step's own angles: splits within the step
    sino = store.array("sinogram")[chunk.time, chunk.channel, chunk.z_start:chunk.z_stop, :len(angles)]
    idx = split_indices(len(angles), cfg.splits.k)[chunk.split]
    kw = dict(center=geom["center"], n_pixels=geom["n_pixels"], use_gpu=cfg.recon.use_gpu)
    if cfg.recon.algorithm == "fbp":
        rec = fbp(sino[:, idx], angles[idx], filter=cfg.recon.filter, **kw)
    else:
        rec = sirt(sino[:, idx], angles[idx], iterations=cfg.recon.iterations, **kw)
    store.write_region("recon", chunk.region, rec)
    pdir = _progress_dir(store, key_for(store, cfg, "reconstruct"))
    tmp = pdir / f".{_marker(chunk)}.{os.getpid()}.tmp"
    device = "cuda" if cfg.recon.use_gpu != "no" and gpu_available() else "cpu"
    tmp.write_text(json.dumps({"z": [chunk.z_start, chunk.z_stop], "pid": os.getpid(), "device": device}))
    os.replace(tmp, pdir / _marker(chunk))
    return chunk


def finish_reconstruct(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    """Mark the stage complete, after checking that every chunk has been written."""
    key = key_for(store, cfg, "reconstruct")
    done = {p.name for p in _progress_dir(store, key).glob("*.done")}
    missing = [c for c in recon_chunks(store, cfg) if _marker(c) not in done]
    if missing:
        raise RuntimeError(f"reconstruction incomplete: {len(missing)} chunks not written, e.g. {missing[0]}")
    devices = sorted({json.loads(p.read_text()).get("device", "?") for p in _progress_dir(store, key).glob("*.done")})
    if len(devices) > 1:  # a run resumed on other hardware: CPU and GPU FBPs differ slightly
        log.warning("reconstruction chunks were computed on %s; rerun with a fresh store for uniform results",
                    " and ".join(devices))
    store.mark_stage("reconstruct", key=key, k=cfg.splits.k, algorithm=cfg.recon.algorithm, chunks=len(done),
                     devices=devices,
                     **({"seconds": round(seconds, 3)} if seconds is not None else {}))


def reconstruct(store: ScanStore, cfg: RunConfig, progress: bool = True) -> None:
    """All split reconstructions, sequentially (the flow runs the chunks in parallel)."""
    if reconstruct_current(store, cfg):
        return
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    chunks = prepare_reconstruct(store, cfg)
    for chunk in tqdm(chunks, desc="reconstruct", unit="chunk", disable=not (progress and show_progress())):
        reconstruct_chunk(store, cfg, chunk)
    finish_reconstruct(store, cfg, time.perf_counter() - t0)


def volume_shape(store: ScanStore) -> tuple[int, int, int]:
    """``(time, channel, z)`` of the store: how :func:`load_splits` stacks its images."""
    ds = store.open()
    return (int(ds.sizes["time"]), int(ds.sizes["channel"]), int(ds.sizes["z"]))


def load_splits(store: ScanStore) -> np.ndarray:
    """Split reconstructions as ``(split, time * channel * z, y, x)``: time steps and channels
    stacked along z, in that order (:func:`volume_shape` gives the three sizes)."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)  # (split, time, channel, z, y, x)
    s, t, c, z, y, x = rec.shape
    return rec.reshape(s, t * c * z, y, x)
