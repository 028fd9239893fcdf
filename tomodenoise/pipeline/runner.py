"""The whole pipeline in one process, stage after stage."""

from __future__ import annotations

import time

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from ..preview import store_preview
from .denoising import denoise
from .ingestion import ingest
from .keys import store_for
from .reconstruction import reconstruct
from .reporting import report
from .training import train

__all__ = ["run"]


def run(cfg: RunConfig, reference: np.ndarray | None = None, progress: bool = True) -> ScanStore:
    """The whole pipeline in this process, stage after stage (resumes completed stages).

    Holds the store's lock (:mod:`tomodenoise.lock`) like the flow, and logs each stage's
    summary line (:mod:`tomodenoise.summary`).
    """
    from ..lock import store_lock
    from ..summary import log_stage

    with store_lock(store_for(cfg).root):
        t0 = time.time()
        store = ingest(cfg)
        log_stage(store, "ingest", t0)
        store_preview(store, cfg)  # report/preview_centre.png: check the centre before the long work
        t0 = time.time()
        reconstruct(store, cfg, progress=progress)
        log_stage(store, "reconstruct", t0)
        t0 = time.time()
        ckpt = train(store, cfg)
        log_stage(store, "train", t0)
        t0 = time.time()
        denoise(store, cfg, ckpt)
        log_stage(store, "denoise", t0)
        report(store, cfg, reference=reference)
        log_stage(store, "report")
        if cfg.output.export:
            from ..export import export

            export(store.root, cfg.output.export)
    return store
