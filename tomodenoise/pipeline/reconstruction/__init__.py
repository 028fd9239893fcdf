"""The reconstruct stage: one FBP (or SIRT) per (split, time step, channel, z-slab) chunk,
chunks grouped into tasks by work.

- :mod:`.chunks`: the chunks (Zarr chunks of ``recon``, the unit of resume) and the groups
  one task reconstructs (sized by :mod:`tomodenoise.pipeline.sizing`);
- :mod:`.compute`: the work of one task (:func:`reconstruct_group`);
- :mod:`.stage`: the chunks still to do, start, finish, and reading the result.
"""

from .chunks import Chunk, ChunkGroup, chunk_bytes, recon_chunks, recon_groups
from .compute import reconstruct_group
from .stage import (
    finish_reconstruct,
    load_splits,
    start_reconstruct,
    todo_chunks,
    volume_shape,
)

__all__ = ["Chunk", "ChunkGroup", "chunk_bytes", "finish_reconstruct", "load_splits", "recon_chunks", "recon_groups", 
           "reconstruct_group", "start_reconstruct", "todo_chunks", "volume_shape"]
