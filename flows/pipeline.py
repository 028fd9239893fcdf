"""The pipeline as Prefect flows; each stage is a subflow so the UI shows its progress.

``pipeline_flow`` is what the deployments run. Its parameters are the UI's form: ``scan``
(the scan path, confined to ``TOMODENOISE_INPUT_ROOTS`` on the worker), ``overrides``
(nested configuration values, e.g. ``{"train": {"epochs": 5}}``), ``config`` (the whole
configuration; the deployment's default) and ``reference`` (a clean volume, simulations).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.stages import (
    denoise_task,
    finish_reconstruct_task,
    ingest_task,
    plan_reconstruct_task,
    reconstruct_chunk_task,
    report_task,
    train_task,
)
from tomodenoise import pipeline
from tomodenoise.cluster import dask_runner_kwargs
from tomodenoise.config import ComputeConfig, RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.paths import confine


def task_runner_for(compute: ComputeConfig):
    """The task runner of the chunked stages: Dask (``compute.cluster``) or threads."""
    if compute.cluster == "threads":
        return ThreadPoolTaskRunner(max_workers=compute.n_workers)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(**dask_runner_kwargs(compute))


@flow(name="ingest")
def ingest_flow(config: RunConfig) -> str:
    """Read, flat/dark-correct and -log the scan; find the centre; write the sinogram store."""
    return ingest_task(config)


@flow(name="reconstruct")
def reconstruct_flow(config: RunConfig, store_root: str) -> str:
    """One reconstruction per (split, time, channel, z-slab), run in parallel on the task runner.

    Chunks written by an earlier, interrupted run with the same input and settings are not
    computed again; the stage is marked complete only when every chunk is in the store.
    """
    logger = get_run_logger()
    store = ScanStore(store_root)
    if pipeline.reconstruct_current(store, config):
        logger.info("reconstruction already complete")
        return store_root
    t0 = time.perf_counter()
    total = len(pipeline.recon_chunks(store, config))
    chunks = plan_reconstruct_task(store_root, config)
    logger.info("%d of %d reconstruction chunks to compute (%s)", len(chunks), total, config.compute.cluster)
    progress = _progress(total, "reconstruction chunks", done=total - len(chunks))
    futures = [reconstruct_chunk_task.submit(store_root, config, c) for c in chunks]
    step = max(1, len(futures) // 10)
    for i, fut in enumerate(as_completed(futures), 1):
        fut.result()
        if progress is not None:
            progress.advance()
        if i == len(futures) or i % step == 0:
            logger.info("reconstructed %d/%d chunks", total - len(chunks) + i, total)
    finish_reconstruct_task(store_root, config, time.perf_counter() - t0)
    return store_root


def _progress(total: int, description: str, done: int = 0):
    """A progress artifact in the UI (None where the artifacts module cannot make one)."""
    try:
        from tasks.artifacts import ChunkProgress
    except ImportError:  # pragma: no cover
        return None
    progress = ChunkProgress(total, description)
    if done:
        progress.advance(done)
    return progress


@flow(name="train")
def train_flow(config: RunConfig, store_root: str) -> str:
    """Noise2Inverse training on the split reconstructions; returns the best checkpoint."""
    return train_task(store_root, config)


@flow(name="denoise")
def denoise_flow(config: RunConfig, store_root: str, checkpoint: str | None = None) -> str:
    """Leave-one-out inference over all slices."""
    denoise_task(store_root, config, checkpoint)
    return store_root


def resolve_config(config: RunConfig | None = None, scan: str | None = None,
                   overrides: dict[str, Any] | None = None) -> RunConfig:
    """The run's configuration from the flow's parameters; the scan path confined to the roots."""
    cfg = (config or RunConfig()).with_overrides(overrides)
    if scan:
        cfg.input.path = scan
    if not cfg.input.path:
        raise ValueError("no scan given: set the `scan` parameter (or config.input.path)")
    cfg.input.path = str(confine(cfg.input.path))
    return cfg


@flow(name="tomodenoise-pipeline", log_prints=True)
def pipeline_flow(
    scan: str | None = None,
    overrides: dict[str, Any] | None = None,
    config: RunConfig | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """The whole pipeline: ingest -> reconstruct -> train -> denoise -> report.

    ``scan``: path of the scan (HDF5, NeXus, TIFF folder, .npy/.zarr); ``overrides``: nested
    configuration values merged over ``config``; ``reference``: optional ``.npy`` clean
    volume (z, y, x) for PSNR/SSIM.
    """
    cfg = resolve_config(config, scan, overrides)
    get_run_logger().info("scan %s -> %s", cfg.input.path, pipeline.store_for(cfg).root)
    store_root = ingest_flow(cfg)
    reconstruct_flow.with_options(task_runner=task_runner_for(cfg.compute))(cfg, store_root)
    checkpoint = train_flow(cfg, store_root)
    denoise_flow(cfg, store_root, checkpoint)
    metrics = report_task(store_root, cfg, reference)
    return {"store": store_root, "metrics": metrics}
