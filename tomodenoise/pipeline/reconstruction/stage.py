"""The reconstruct stage's steps: the chunks still to do, starting, finishing, reading the result.

:data:`tomodenoise.pipeline.stages.RECONSTRUCT` puts them behind the stage contract; an executor
runs :func:`~.compute.reconstruct_group` for each group (the Prefect flow in parallel on the
Dask workers, :func:`tomodenoise.pipeline.reconstruct` one after another in this process).
The splits of a time step are taken within that step (its own angles,
:meth:`ScanStore.angles_of`).
"""

from __future__ import annotations

import logging

import numpy as np

from ...config import RunConfig
from ...io.store import ScanStore
from ..keys import invalidate_from, key_for
from ..layout import Layout
from ..markers import Markers
from .chunks import Chunk, recon_chunks

__all__ = ["finish_reconstruct", "load_splits", "start_reconstruct", "todo_chunks", "volume_shape"]

log = logging.getLogger(__name__)


def _markers(store: ScanStore, cfg: RunConfig) -> Markers:
    return Markers(store, "reconstruct", key_for(store, cfg, "reconstruct"))


def todo_chunks(store: ScanStore, cfg: RunConfig, layout: Layout | None = None) -> list[Chunk]:
    """The chunks not yet written with these settings (all of them before the store exists)."""
    chunks = recon_chunks(layout or store, cfg)
    if not store.exists():
        return chunks
    done = _markers(store, cfg).names()
    return [c for c in chunks if c.marker not in done]


def start_reconstruct(store: ScanStore, cfg: RunConfig) -> None:
    """Create ``recon``; reconstructions made with other settings are forgotten (with everything
    downstream), chunks already written with these settings (an interrupted run) are kept."""
    markers = _markers(store, cfg)
    if not markers.path.is_dir():
        invalidate_from(store, "reconstruct")
        markers.fresh()
    n = int(store.attrs["geometry"]["n_pixels"])
    store.init_array("recon", {"split": cfg.splits.k, "y": n, "x": n})


def finish_reconstruct(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    """Mark the stage complete, after checking that every chunk has been written."""
    markers = _markers(store, cfg)
    done = markers.names()
    missing = [c for c in recon_chunks(store, cfg) if c.marker not in done]
    if missing:
        raise RuntimeError(f"reconstruction incomplete: {len(missing)} chunks not written, e.g. {missing[0]}")
    devices = sorted({r.get("device", "?") for r in markers.records()})
    if len(devices) > 1:  # a run resumed on other hardware: CPU and GPU FBPs differ slightly
        log.warning("reconstruction chunks were computed on %s; rerun with a fresh store for uniform results",
                    " and ".join(devices))
    store.mark_stage("reconstruct", key=key_for(store, cfg, "reconstruct"), k=cfg.splits.k,
                     algorithm=cfg.recon.algorithm, chunks=len(done), devices=devices,
                     **({"seconds": round(seconds, 3)} if seconds is not None else {}))


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
