"""The pipeline as Prefect flows; each stage is a subflow so the UI shows its progress."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

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
from tomodenoise.config import RunConfig
from tomodenoise.io.store import ScanStore


@flow(name="ingest")
def ingest_flow(config: RunConfig) -> str:
    """Read, flat/dark-correct and -log the scan; find the centre; write the sinogram store."""
    return ingest_task(config)


@flow(name="reconstruct")
def reconstruct_flow(config: RunConfig, store_root: str) -> str:
    """One FBP per (split, time, channel, z-slab), submitted in parallel."""
    logger = get_run_logger()
    if pipeline.reconstruct_current(ScanStore(store_root), config):
        logger.info("reconstruction already complete")
        return store_root
    t0 = time.perf_counter()
    chunks = plan_reconstruct_task(store_root, config)
    logger.info("%d reconstruction chunks to compute", len(chunks))
    futures = [reconstruct_chunk_task.submit(store_root, config, c) for c in chunks]
    for i, fut in enumerate(futures, 1):
        fut.result()
        if i == len(futures) or i % max(1, len(futures) // 10) == 0:
            logger.info("reconstructed %d/%d chunks", i, len(futures))
    finish_reconstruct_task(store_root, config, time.perf_counter() - t0)
    return store_root


@flow(name="train")
def train_flow(config: RunConfig, store_root: str) -> str:
    """Noise2Inverse training on the split reconstructions; returns the best checkpoint."""
    return train_task(store_root, config)


@flow(name="denoise")
def denoise_flow(config: RunConfig, store_root: str, checkpoint: str | None = None) -> str:
    """Leave-one-out inference over all slices."""
    denoise_task(store_root, config, checkpoint)
    return store_root


@flow(name="tomodenoise-pipeline", log_prints=True)
def pipeline_flow(config: RunConfig, reference: str | None = None) -> dict[str, Any]:
    """The whole pipeline: ingest -> reconstruct -> train -> denoise -> report.

    ``reference`` optionally names a ``.npy`` clean volume (z, y, x) for PSNR/SSIM.
    """
    store_root = ingest_flow(config)
    reconstruct_flow(config, store_root)
    checkpoint = train_flow(config, store_root)
    denoise_flow(config, store_root, checkpoint)
    metrics = report_task(store_root, config, reference)
    return {"store": store_root, "metrics": metrics}
