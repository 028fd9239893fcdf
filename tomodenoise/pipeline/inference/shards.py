"""The denoise stage cut into shards: groups of whole Zarr chunks of ``denoised``.

A chunk of ``denoised`` is one (time step, channel, z-slab). :func:`todo_denoise` lists the
chunks still to compute and :func:`denoise_shards` cuts them into shards, :func:`start_denoise`
creates the array; :func:`denoise_shard` denoises the chunks
of one shard (any process: a Dask worker, a thread, this one), writing each as one whole
chunk and then, atomically, its completion marker under ``progress/denoise-<key>/``;
:func:`finish_denoise` checks every marker and marks the stage complete. The flow runs the
shards in parallel on the Dask workers; :func:`tomodenoise.pipeline.denoise` runs the very
same shards one after another, so both give the same bytes.

How many chunks one shard gets is decided by :func:`tomodenoise.pipeline.sizing.group_size`:
about ``compute.tasks_per_worker`` shards per worker of ``compute.n_workers``, and at most
``compute.task_memory`` of data per shard (per chunk: the K splits with the halo the
neighbour channels need, plus the output, float32). On a CPU a shard runs with
``compute.threads_per_worker`` PyTorch threads wherever it runs (:func:`cpu_threads`): the
bytes of a matrix product depend on the thread count.

Markers of a key survive a killed run, so running again computes only the chunks without
one. A new key (other input or settings upstream) starts with no markers, and so does another
checkpoint or other inference settings (recorded in ``settings.json`` beside the markers).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import RunConfig
from ...io.store import ScanStore, z_slabs
from ..keys import key_for
from ..layout import Layout
from ..integrity import checksum
from ..markers import Markers
from ..sizing import group_size, grouped
from .models import cached_model, checkpoint_identity, model_loads

__all__ = ["DenoiseChunk", "Shard", "cpu_threads", "denoise_chunks", "denoise_shard",
           "denoise_shards", "finish_denoise", "shard_unit_bytes", "start_denoise", "todo_denoise"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DenoiseChunk:
    """One Zarr chunk of ``denoised``: one time step, channel and z-slab."""

    time: int
    channel: int
    z_start: int
    z_stop: int

    @property
    def region(self) -> tuple[int, int, slice]:
        return (self.time, self.channel, slice(self.z_start, self.z_stop))

    @property
    def label(self) -> str:
        return f"t{self.time}-c{self.channel}-z{self.z_start}"

    @property
    def marker(self) -> str:
        return f"{self.label}.done"


@dataclass(frozen=True)
class Shard:
    """One unit of denoise work: consecutive chunks of ``denoised`` (one task)."""

    index: int
    chunks: tuple[DenoiseChunk, ...]

    @property
    def label(self) -> str:
        """``t0-c0-z0`` for one chunk, ``t0-c0-z0..t0-c0-z6`` for its first and last chunk."""
        first, last = self.chunks[0].label, self.chunks[-1].label
        return first if len(self.chunks) == 1 else f"{first}..{last}"

    @property
    def name(self) -> str:
        """``denoise-<label>``: the task's name."""
        return f"denoise-{self.label}"

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def n_slices(self) -> int:
        return sum(c.z_stop - c.z_start for c in self.chunks)


def denoise_chunks(store: ScanStore | Layout) -> list[DenoiseChunk]:
    """Every chunk of ``denoised``, in (time, channel, z) order."""
    lay = Layout.of(store)
    return [DenoiseChunk(t, c, zs.start, zs.stop) for t in range(lay.time) for c in range(lay.channel)
            for zs in z_slabs(lay.z, lay.z_chunk)]


def _checkpoint(store: ScanStore, checkpoint: str | os.PathLike | None) -> Path:
    return Path(checkpoint) if checkpoint else store.model_dir / "best.pt"


def _markers(store: ScanStore, cfg: RunConfig) -> Markers:
    return Markers(store, "denoise", key_for(store, cfg, "denoise"))


def _settings(store: ScanStore, cfg: RunConfig, checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """What the bytes of a chunk depend on besides the stage key: the checkpoint and the
    inference settings (not the device: that is recorded per marker)."""
    inf = cfg.inference
    return {"checkpoint": checkpoint_identity(_checkpoint(store, checkpoint)), "batch_size": inf.batch_size,
            "precision": inf.precision, "tile": inf.tile, "tile_overlap": inf.tile_overlap}


def shard_unit_bytes(store: ScanStore | Layout, cfg: RunConfig) -> int:
    """Bytes one chunk holds while it is denoised: its K splits with the neighbours' halo, plus
    the output (float32)."""
    lay = Layout.of(store)
    nb = cfg.train.neighbours if isinstance(cfg.train.neighbours, int) else 2  # auto: at most 2 (the recipe)
    images = lay.z_width + 2 * nb if cfg.train.neighbour_axis == "z" else lay.z_width * (2 * nb + 1)
    return 4 * lay.n_pixels**2 * (cfg.splits.k * images + lay.z_width)


def todo_denoise(store: ScanStore, cfg: RunConfig, checkpoint: str | os.PathLike | None = None,
                 layout: Layout | None = None) -> list[DenoiseChunk]:
    """The chunks not yet written with these settings and this checkpoint (reads only)."""
    chunks = denoise_chunks(layout or store)
    if not store.exists() or not _checkpoint(store, checkpoint).is_file():
        return chunks
    markers = _markers(store, cfg)
    if not markers.settings_match(_settings(store, cfg, checkpoint)):
        return chunks
    done = markers.names()
    return [c for c in chunks if c.marker not in done]


def denoise_shards(store: ScanStore | Layout, cfg: RunConfig, chunks: list[DenoiseChunk]) -> list[Shard]:
    """``chunks`` cut into shards (see the module docstring)."""
    size = group_size(len(chunks), shard_unit_bytes(store, cfg), workers=cfg.compute.n_workers,
                      tasks_per_worker=cfg.compute.tasks_per_worker, task_memory=cfg.compute.task_memory)
    return [Shard(i, tuple(g)) for i, g in enumerate(grouped(chunks, size))]


def start_denoise(store: ScanStore, cfg: RunConfig, checkpoint: str | os.PathLike | None = None) -> None:
    """Create ``denoised``; mark the stage (and the report after it) incomplete. Chunks already
    written with this key, checkpoint and inference settings (an interrupted run) are kept,
    other markers are forgotten."""
    markers = _markers(store, cfg)
    if markers.path.is_dir() and not markers.settings_match(_settings(store, cfg, checkpoint)):
        log.info("denoise: another checkpoint or other inference settings, computing every chunk again")
    markers.fresh(_settings(store, cfg, checkpoint))
    store.clear_stage("denoise", "report")
    n = int(store.attrs["geometry"]["n_pixels"])
    store.init_array("denoised", {"y": n, "x": n})


def denoise_shard(store: ScanStore, cfg: RunConfig, shard: Shard,
                  checkpoint: str | os.PathLike | None = None) -> Shard:
    """Denoise the chunks of ``shard``: each written as one whole Zarr chunk, then its marker.

    The network is loaded once per process (:func:`~.models.cached_model`) and reused by
    every later shard of that process.
    """
    from ..training import uses_channel_normalisation
    from .block import denoise_block, device_for

    device = device_for(cfg.inference.device)
    model, meta = cached_model(_checkpoint(store, checkpoint), device)
    scales = store.attrs.get("channel_normalisation") if uses_channel_normalisation(store, cfg) else None
    markers = _markers(store, cfg)
    inf = cfg.inference
    for chunk in shard.chunks:
        with cpu_threads(cfg.compute.threads_per_worker, device):
            out = denoise_block(store, model, meta, chunk.time, chunk.channel, slice(chunk.z_start, chunk.z_stop),
                                batch_size=inf.batch_size, device=device, scales=scales, precision=inf.precision,
                                tile=inf.tile, tile_overlap=inf.tile_overlap)
        store.write_region("denoised", chunk.region, out)
        markers.write(chunk.marker, z=[chunk.z_start, chunk.z_stop], shard=shard.index, device=device,
                      model_loads=model_loads(), crc=checksum(out))
    return shard


@contextmanager
def cpu_threads(n: int, device: str) -> Iterator[None]:
    """PyTorch's CPU threads set to ``n`` (``compute.threads_per_worker``) while a CPU shard runs.

    The bytes of a CPU matrix product depend on how many threads share it, so a shard uses the
    threads of one Dask worker wherever it runs: in a worker (where this changes nothing), a
    thread, or the single-process stage. That is what makes them all write the same bytes.
    """
    import torch

    if str(device).startswith("cuda") or torch.get_num_threads() == n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finish_denoise(store: ScanStore, cfg: RunConfig, seconds: float | None = None) -> None:
    """Mark the stage complete, after checking that every chunk has been written."""
    key = key_for(store, cfg, "denoise")
    markers = _markers(store, cfg)
    done = markers.names()
    missing = [c for c in denoise_chunks(store) if c.marker not in done]
    if missing:
        raise RuntimeError(f"denoise incomplete: {len(missing)} chunks not written, e.g. {missing[0]}")
    records = markers.records()
    devices = sorted({r.get("device", "?") for r in records})
    if len(devices) > 1:  # a run resumed on other hardware: CPU and GPU outputs differ slightly
        log.warning("denoise chunks were computed on %s; rerun with a fresh store for uniform results",
                    " and ".join(devices))
    store.mark_stage("denoise", key=key, chunks=len(done), processes=len({r.get("pid") for r in records}),
                     devices=devices, **({"seconds": round(seconds, 3)} if seconds is not None else {}))
