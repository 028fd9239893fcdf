"""The units of reconstruction work (chunks) and the tasks they are grouped into.

A chunk is one split, time step, channel and z-slab: one Zarr chunk of ``recon``, the unit
of writing and of resume (one completion marker each). A task reconstructs a
:class:`ChunkGroup`: consecutive chunks in (time, channel, z, split) order, so that the K
splits of a slab are neighbours and the task reads the slab's sinogram once for all of
them. How many chunks a group holds is :func:`tomodenoise.pipeline.sizing.group_size`'s
answer: about ``compute.tasks_per_worker`` tasks per worker, and never more than
``compute.task_memory`` of data (sinogram slab + output slab per chunk, float32). A task
computes, writes and marks its chunks one after the other, so what it holds at once is one
sinogram slab and one output slab, and the Zarr codec's copies of them while they are read
and written: about two chunks' worth, whatever the group's size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...config import RunConfig
from ...io.store import ScanStore, z_slabs
from ..layout import Layout
from ..sizing import group_size, grouped, parse_bytes

__all__ = ["Chunk", "ChunkGroup", "chunk_bytes", "recon_chunks", "recon_groups"]

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

    @property
    def label(self) -> str:
        """``t<time>-c<channel>-z<z_start>-s<split>``: the chunk in the order groups are cut."""
        return f"t{self.time}-c{self.channel}-z{self.z_start}-s{self.split}"

    @property
    def marker(self) -> str:
        """The name of its completion marker (:class:`~tomodenoise.pipeline.markers.Markers`)."""
        return f"s{self.split}-t{self.time}-c{self.channel}-z{self.z_start}.done"


@dataclass(frozen=True)
class ChunkGroup:
    """The chunks one task reconstructs, and the most data bytes it may hold (planned)."""

    chunks: tuple[Chunk, ...]
    nbytes: int = 0

    def __post_init__(self) -> None:
        if not self.chunks:
            raise ValueError("a chunk group needs at least one chunk")
        object.__setattr__(self, "chunks", tuple(self.chunks))

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def name(self) -> str:
        """``recon-<first chunk>..<last chunk>`` (``recon-<chunk>`` for a single one): the task's name."""
        first, last = self.chunks[0].label, self.chunks[-1].label
        return f"recon-{first}" if len(self.chunks) == 1 else f"recon-{first}..{last}"


def recon_chunks(store: ScanStore | Layout, cfg: RunConfig) -> list[Chunk]:
    """All reconstruction chunks, in (time, channel, z-slab, split) order."""
    lay = Layout.of(store)
    return [Chunk(split, t, c, zs.start, zs.stop) for t in range(lay.time) for c in range(lay.channel)
            for zs in z_slabs(lay.z, lay.z_chunk) for split in range(cfg.splits.k)]


def chunk_bytes(store: ScanStore | Layout) -> int:
    """Data bytes of the largest chunk: its sinogram slab (all angles of the widest time
    step) plus its output slab, float32. What a task holds per chunk at most."""
    lay = Layout.of(store)
    return 4 * lay.z_width * (lay.angle * lay.det + lay.n_pixels**2)


def recon_groups(store: ScanStore | Layout, cfg: RunConfig, chunks: list[Chunk]) -> list[ChunkGroup]:
    """``chunks`` cut into the tasks that reconstruct them (see the module docstring)."""
    if not chunks:
        return []
    unit = chunk_bytes(store)
    limit = parse_bytes(cfg.compute.task_memory)
    if 2 * unit > limit:  # a task computes one chunk at a time: its slabs plus the Zarr codec's copies of them
        log.warning("one reconstruction chunk needs about %.1f MiB (sinogram and output slab, and their copies while "
                    "read and written), more than compute.task_memory = %s: lower recon.z_chunk",
                    2 * unit / 2**20, cfg.compute.task_memory)
    size = group_size(len(chunks), unit, workers=cfg.compute.n_workers,
                      tasks_per_worker=cfg.compute.tasks_per_worker, task_memory=limit)
    return [ChunkGroup(tuple(g), unit * len(g)) for g in grouped(chunks, size)]
