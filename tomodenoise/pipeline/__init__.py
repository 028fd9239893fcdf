"""The pipeline's stages on a scan store (no Prefect, no Dask).

Each stage reads from and writes to ``<out>/<scan_id>/`` (see :mod:`tomodenoise.io.store`)
and marks itself complete there only when all its output is written. :mod:`.stages` holds the
stage contract (plan, start, run a unit, finish) and the one list of stages; :mod:`.executor`
runs them: one after another here, or on the Prefect flow's executor (``flows/``), which runs
the reconstruction's and the denoising's units on Dask workers. A notebook can call them
directly::

    from tomodenoise.config import RunConfig
    from tomodenoise import pipeline
    cfg = RunConfig.from_file("run.yaml")
    store = pipeline.run(cfg)

One module per stage: :mod:`.ingestion` (with :mod:`.modalities`: static, dynamic 4D and
XRD-CT scans to one store layout), :mod:`.reconstruction`, :mod:`.training`,
:mod:`.inference` (sharded denoising), :mod:`.reporting`; :mod:`.keys` decides what a rerun may skip,
:mod:`.markers` records which chunks are written, :mod:`.layout` gives the sizes a plan needs;
:mod:`.runner` runs them all.
"""

from .inference import (
    DenoiseChunk,
    denoise_block,
    device_for,
    Shard,
    denoise_chunks,
    denoise_shard,
    finish_denoise,
)
from .ingestion import ingest
from .keys import input_identity, invalidate_from, key_for, scan_id_for, stage_current, stage_keys, store_for
from .reconstruction import (
    Chunk,
    finish_reconstruct,
    load_splits,
    recon_chunks,
    volume_shape,
)
from .executor import Sequential, run_pipeline, run_stage, start_stage
from .layout import Layout
from .reporting import report
from .runner import denoise, reconstruct, run, verify_store
from .stages import STAGES, Context, Plan, Stage, stage_named
from .training import train

__all__ = [
    "STAGES",
    "Chunk",
    "Context",
    "Layout",
    "Plan",
    "Sequential",
    "Stage",
    "DenoiseChunk",
    "Shard",
    "denoise",
    "denoise_block",
    "denoise_chunks",
    "denoise_shard",
    "device_for",
    "finish_denoise",
    "finish_reconstruct",
    "ingest",
    "input_identity",
    "invalidate_from",
    "key_for",
    "load_splits",
    "recon_chunks",
    "reconstruct",
    "report",
    "run",
    "run_pipeline",
    "run_stage",
    "start_stage",
    "scan_id_for",
    "stage_current",
    "stage_keys",
    "stage_named",
    "store_for",
    "train",
    "verify_store",
    "volume_shape",
]
