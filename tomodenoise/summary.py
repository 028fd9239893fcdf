"""The console's summaries: one line per pipeline stage (what was done, how long it took, where
it went) and the run's figures at the end (:func:`metrics_table`).

The lines are built from what each stage recorded in the store (``ScanStore.mark_stage``), so
the flow and the plain pipeline print the same, and a stage skipped because its result is
current says so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .io.store import ScanStore
from .logs import summary
from .report import metrics_lines

__all__ = ["log_stage", "metrics_table", "stage_line"]

log = logging.getLogger("tomodenoise.stages")


def _fresh(info: dict[str, Any], since: float | None) -> bool:
    if since is None or not info.get("finished"):
        return True
    finished = datetime.fromisoformat(info["finished"])
    return finished.timestamp() >= int(since)  # finished is recorded to the second


def _sec(info: dict[str, Any]) -> str:
    s = info.get("seconds")
    return "" if s is None else f"{float(s):.1f} s"


def _rel(store: ScanStore, path: Any) -> str:
    """``path`` relative to the store (the console names the store once, at the start)."""
    try:
        return str(Path(str(path)).resolve().relative_to(store.root.resolve()))
    except ValueError:
        return str(path)


def stage_line(store: ScanStore, stage: str, since: float | None = None) -> str:
    """The summary of ``stage`` as recorded in ``store``; ``since``: when this run started it."""
    info = store.stage_info(stage)
    name = f"{stage:<11}"
    if not info:
        return f"{name} not done"
    if not _fresh(info, since):
        return f"{name} already done with these settings (kept from {info.get('finished')})"
    if stage == "ingest":
        ds = store.open()
        clamped = int(info.get("n_clamped") or 0)
        extra = f", {clamped} values clamped before -log" if clamped else ""
        lead = ""
        if ds.sizes["time"] > 1:
            counts = np.isfinite(np.asarray(ds["step_angles"].values)).sum(axis=1)
            lead = (f"dynamic: {ds.sizes['time']} time steps of {counts.min()}-{counts.max()} projections, "
                    if counts.min() != counts.max() else f"dynamic: {ds.sizes['time']} time steps, ")
        if ds.sizes["channel"] > 1:
            lead = f"XRD-CT: {ds.sizes['channel']} channels, "
        angles = "projections" if ds.sizes["time"] > 1 else "angles"
        return (f"{name} {lead}{ds.sizes['z']} slices x {ds.sizes['angle']} {angles} x {ds.sizes['det']} px, "
                f"centre {float(info.get('center', 0)):.2f} px{extra}; {_sec(info)} -> scan.zarr")
    if stage == "reconstruct":
        devices = "/".join(info.get("devices") or []) or "cpu"
        return (f"{name} {info.get('chunks')} {str(info.get('algorithm', '')).upper()} chunks "
                f"({info.get('k')} splits) on {devices}; {_sec(info)} -> scan.zarr (recon)")
    if stage == "train":
        loss = info.get("best_val_loss")
        loss_s = f", best validation loss {loss:.4g} at epoch {info.get('best_epoch')}" if loss is not None else ""
        return (f"{name} {info.get('epochs')} epoch{'s' if info.get('epochs') != 1 else ''} (stopped by {info.get('stopped')}){loss_s}; "
                f"{_sec(info)} -> {_rel(store, info.get('checkpoint'))}")
    if stage == "denoise":
        return f"{name} leave-one-out inference over all slices; {_sec(info)} -> scan.zarr (denoised)"
    if stage == "report":
        n = len(info.get("previews") or [])
        return f"{name} metrics and {n} preview{'s' if n != 1 else ''} -> report/"
    return f"{name} {_sec(info)}"


def log_stage(store: ScanStore, stage: str, since: float | None = None) -> None:
    """Log :func:`stage_line` as a console summary (never fails the run)."""
    try:
        summary(log, stage_line(store, stage, since))
    except Exception as exc:  # a summary is for people; a missing detail must not stop a run
        log.debug("no summary for %s: %s", stage, exc)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The figures of one run (its ``metrics.json``) for the console, as ``report.md`` and the UI
    show them (:func:`tomodenoise.report.metrics_lines`): what ``tomodenoise run`` prints."""
    return "\n".join(metrics_lines(metrics))
