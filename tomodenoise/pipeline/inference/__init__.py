"""Sharded inference: the denoise stage as groups of whole Zarr chunks of ``denoised``.

:mod:`.block` denoises one (time step, channel, z-slab) block; :mod:`.models` keeps a
worker's network loaded across its shards; :mod:`.shards` plans, runs and finishes shards.
"""

from .block import denoise_block, device_for
from .models import cached_model, clear_model_cache, model_loads
from .shards import (
    DenoiseChunk,
    Shard,
    cpu_threads,
    denoise_chunks,
    denoise_shard,
    denoise_shards,
    finish_denoise,
    shard_unit_bytes,
    start_denoise,
    todo_denoise,
)

__all__ = ["DenoiseChunk", "Shard", "cached_model", "clear_model_cache", "cpu_threads", "denoise_block", "denoise_chunks",
           "denoise_shard", "denoise_shards", "device_for", "finish_denoise", "model_loads",
           "shard_unit_bytes", "start_denoise", "todo_denoise"]
