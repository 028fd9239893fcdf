"""The pipeline's stages as plain functions on a scan store (no Prefect, no Dask).

Each stage reads from and writes to ``<out>/<scan_id>/`` (see :mod:`tomodenoise.io.store`)
and marks itself complete there only when all its output is written. The Prefect flows
(``flows/``) call exactly these functions, grouping the reconstruction's and the denoising's chunks into
tasks sized by their work; a notebook can call them directly::

    from tomodenoise.config import RunConfig
    from tomodenoise import pipeline
    cfg = RunConfig.from_file("run.yaml")
    store = pipeline.run(cfg)

One module per stage: :mod:`.ingestion` (with :mod:`.modalities`: static, dynamic 4D and
XRD-CT scans to one store layout), :mod:`.reconstruction`, :mod:`.training`,
:mod:`.denoising` (sharded: :mod:`.inference`), :mod:`.reporting`; :mod:`.keys` decides what a rerun may skip;
:mod:`.runner` runs them all.
"""

from .denoising import denoise, denoise_block, device_for
from .inference import (
    DenoiseChunk,
    Shard,
    denoise_chunks,
    denoise_current,
    denoise_shard,
    finish_denoise,
    prepare_denoise,
)
from .ingestion import ingest
from .keys import input_identity, invalidate_from, key_for, scan_id_for, stage_current, stage_keys, store_for
from .reconstruction import (
    Chunk,
    finish_reconstruct,
    load_splits,
    prepare_reconstruct,
    recon_chunks,
    reconstruct,
    reconstruct_chunk,
    reconstruct_current,
    volume_shape,
)
from .reporting import report
from .runner import run
from .training import train

__all__ = [
    "Chunk",
    "DenoiseChunk",
    "Shard",
    "denoise",
    "denoise_block",
    "denoise_chunks",
    "denoise_current",
    "denoise_shard",
    "device_for",
    "finish_denoise",
    "finish_reconstruct",
    "ingest",
    "input_identity",
    "invalidate_from",
    "key_for",
    "load_splits",
    "prepare_denoise",
    "prepare_reconstruct",
    "recon_chunks",
    "reconstruct",
    "reconstruct_chunk",
    "reconstruct_current",
    "report",
    "run",
    "scan_id_for",
    "stage_current",
    "stage_keys",
    "store_for",
    "train",
    "volume_shape",
]
