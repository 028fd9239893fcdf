"""The pipeline in this process: all stages (:func:`run`), or one (:func:`reconstruct`,
:func:`denoise`), on the sequential executor. The flow runs the very same units in parallel
on the Dask workers, so both write the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from .executor import Sequential, run_pipeline, run_stage
from .integrity import readable_checkpoint
from .stages import DENOISE, RECONSTRUCT, STAGES, Chunked, Context

__all__ = ["denoise", "reconstruct", "run", "verify_store"]


def run(cfg: RunConfig, reference: np.ndarray | str | None = None, progress: bool = True) -> ScanStore:
    """The whole pipeline in this process, stage after stage (resumes completed stages).

    Holds the store's lock (:mod:`tomodenoise.lock`) like the flow, and logs each stage's
    summary line (:mod:`tomodenoise.summary`). ``reference``: a clean volume (or its ``.npy``)
    for the report's PSNR/SSIM.
    """
    return run_pipeline(cfg, Sequential(progress=progress), Context(reference=reference))


def reconstruct(store: ScanStore, cfg: RunConfig, progress: bool = True) -> None:
    """All split reconstructions: one FBP (or SIRT) per (split, time step, channel, z-slab) chunk.

    Resumes: chunks written by an interrupted run with the same settings are not computed again.
    """
    run_stage(RECONSTRUCT, store, cfg, Sequential(progress=progress))


def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None, progress: bool | None = None) -> None:
    """Denoise every slice of every time step and channel with the K leave-one-out inputs and
    write ``denoised`` (``checkpoint``: default ``model/best.pt``).

    Resumes: chunks written by an interrupted run with the same settings are not computed again.
    """
    run_stage(DENOISE, store, cfg, Sequential(progress=True if progress is None else progress),
              Context(checkpoint=str(checkpoint) if checkpoint else None))


def verify_store(store: ScanStore, cfg: Any) -> dict[str, list[str]]:
    """The damage of every stage the store holds as complete, by stage (an empty list: none
    found). ``cfg``: the configuration the store was made with (its ``config`` attribute)."""
    found: dict[str, list[str]] = {}
    for stage in STAGES:
        if not (store.stage_done(stage.key) and store.stage_info(stage.key).get("key")):
            continue
        if isinstance(stage, Chunked):
            found[stage.key] = [str(d) for d in stage.damaged(store, cfg, store.stage_info(stage.key)["key"])]
        elif stage.key == "train":
            why = readable_checkpoint(store.model_dir / "best.pt")
            found["train"] = [f"model/best.pt {why}"] if why else []
    return found
