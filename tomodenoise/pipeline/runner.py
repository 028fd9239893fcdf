"""The whole pipeline in one process, stage after stage."""

from __future__ import annotations

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from .executor import Sequential, run_pipeline
from .stages import Context

__all__ = ["run"]


def run(cfg: RunConfig, reference: np.ndarray | str | None = None, progress: bool = True) -> ScanStore:
    """The whole pipeline in this process, stage after stage (resumes completed stages).

    Holds the store's lock (:mod:`tomodenoise.lock`) like the flow, and logs each stage's
    summary line (:mod:`tomodenoise.summary`). ``reference``: a clean volume (or its ``.npy``)
    for the report's PSNR/SSIM.
    """
    return run_pipeline(cfg, Sequential(progress=progress), Context(reference=reference))
