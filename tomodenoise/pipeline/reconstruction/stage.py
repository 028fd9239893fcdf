"""The reconstruct stage: plan the tasks, run them (here one after another), mark it complete.

The flow runs :func:`~.compute.reconstruct_group` for every group of :func:`plan_reconstruct`
in parallel on the Dask workers; :func:`reconstruct` runs the same groups one after another.
The splits of a time step are taken within that step (its own angles,
:meth:`ScanStore.angles_of`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np

from ...config import RunConfig
from ...io.store import ScanStore
from ...logs import bars_wanted
from ..keys import invalidate_from, key_for, stage_current
from .chunks import Chunk, ChunkGroup, recon_chunks, recon_groups
from .compute import reconstruct_group
from .progress import done_markers, marker_name, progress_dir

__all__ = ["finish_reconstruct", "load_splits", "plan_reconstruct", "prepare_reconstruct", "reconstruct",
           "reconstruct_current", "volume_shape"]

log = logging.getLogger(__name__)


def reconstruct_current(store: ScanStore, cfg: RunConfig) -> bool:
    """True when the split reconstructions in the store were made with these settings."""
    return stage_current(store, "reconstruct", key_for(store, cfg, "reconstruct"))


def prepare_reconstruct(store: ScanStore, cfg: RunConfig) -> list[Chunk]:
    """Create ``recon`` and list the chunks still to compute.

    Reconstructions made with other settings are forgotten (with everything downstream);
    chunks already written with these settings (an interrupted run) are kept.
    """
    key = key_for(store, cfg, "reconstruct")
    pdir = progress_dir(store, key)
    n = int(store.attrs["geometry"]["n_pixels"])
    if not pdir.is_dir():
        invalidate_from(store, "reconstruct")
        if pdir.parent.is_dir():
            for old in pdir.parent.glob("reconstruct-*"):
                shutil.rmtree(old, ignore_errors=True)
        pdir.mkdir(parents=True)
    store.init_array("recon", {"split": cfg.splits.k, "y": n, "x": n})
    done = done_markers(pdir)
    todo = [c for c in recon_chunks(store, cfg) if marker_name(c) not in done]
    if len(done):
        log.info("reconstruction: %d chunks already written, %d to compute", len(done), len(todo))
    return todo


def plan_reconstruct(store: ScanStore, cfg: RunConfig) -> list[ChunkGroup]:
    """:func:`prepare_reconstruct`, its chunks cut into tasks (:func:`~.chunks.recon_groups`)."""
    groups = recon_groups(store, cfg, prepare_reconstruct(store, cfg))
    if groups:
        log.info("reconstruction: %d chunks in %d tasks of up to %d chunks (%.1f MiB each at most)",
                 sum(len(g) for g in groups), len(groups), max(len(g) for g in groups),
                 max(g.nbytes for g in groups) / 2**20)
    return groups


def finish_reconstruct(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    """Mark the stage complete, after checking that every chunk has been written."""
    key = key_for(store, cfg, "reconstruct")
    pdir = progress_dir(store, key)
    done = done_markers(pdir)
    missing = [c for c in recon_chunks(store, cfg) if marker_name(c) not in done]
    if missing:
        raise RuntimeError(f"reconstruction incomplete: {len(missing)} chunks not written, e.g. {missing[0]}")
    devices = sorted({json.loads((pdir / name).read_text()).get("device", "?") for name in done})
    if len(devices) > 1:  # a run resumed on other hardware: CPU and GPU FBPs differ slightly
        log.warning("reconstruction chunks were computed on %s; rerun with a fresh store for uniform results",
                    " and ".join(devices))
    store.mark_stage("reconstruct", key=key, k=cfg.splits.k, algorithm=cfg.recon.algorithm, chunks=len(done),
                     devices=devices,
                     **({"seconds": round(seconds, 3)} if seconds is not None else {}))


def reconstruct(store: ScanStore, cfg: RunConfig, progress: bool = True) -> None:
    """All split reconstructions, the flow's task groups one after another."""
    if reconstruct_current(store, cfg):
        return
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    groups = plan_reconstruct(store, cfg)
    with tqdm(total=sum(len(g) for g in groups), desc="reconstruct", unit="chunk",
              disable=not (progress and bars_wanted())) as bar:
        for group in groups:
            reconstruct_group(store, cfg, group, on_chunk=lambda _chunk: bar.update(1))
    finish_reconstruct(store, cfg, time.perf_counter() - t0)


def volume_shape(store: ScanStore) -> tuple[int, int, int]:
    """``(time, channel, z)`` of the store: how :func:`load_splits` stacks its images."""
    shape = store.array("sinogram").shape
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def load_splits(store: ScanStore) -> np.ndarray:
    """Split reconstructions as ``(split, time * channel * z, y, x)``: time steps and channels
    stacked along z, in that order (:func:`volume_shape` gives the three sizes)."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)  # (split, time, channel, z, y, x)
    s, t, c, z, y, x = rec.shape
    return rec.reshape(s, t * c * z, y, x)
