"""One line per pipeline stage for the console: what was done, how long it took, where it went.

The lines are built from what each stage recorded in the store (``ScanStore.mark_stage``), so
the flow and the plain pipeline print the same, and a stage skipped because its result is
current says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .io.store import ScanStore
from .logs import summary

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
    """The metrics of one run as a small Markdown table (what ``tomodenoise run`` prints)."""
    fbp, den = metrics.get("fbp", {}), metrics.get("denoised", {})
    lines = ["| metric | FBP | denoised |", "|---|---|---|"]
    for key, spec in (("psnr", ".2f"), ("ssim", ".3f")):
        if key in fbp or key in den:
            f = lambda v: "n/a" if v is None else format(v, spec)  # noqa: E731
            lines.append(f"| {key.upper()} | {f(fbp.get(key))} | {f(den.get(key))} |")
    if "psnr_mean_over_channels" in fbp:
        lines.append(f"| PSNR, mean over channels | {fbp['psnr_mean_over_channels']:.2f} | "
                     f"{den['psnr_mean_over_channels']:.2f} |")
    for key, what in (("per_time", "time"), ("per_channel", "channel")):
        rows = metrics.get(key) or []
        if rows:
            lo = min(rows, key=lambda e: e["denoised_psnr"] - e["fbp_psnr"])
            hi = max(rows, key=lambda e: e["denoised_psnr"] - e["fbp_psnr"])
            lines.append(f"| PSNR gain per {what} ({len(rows)}) | | {lo['denoised_psnr'] - lo['fbp_psnr']:+.2f} to "
                         f"{hi['denoised_psnr'] - hi['fbp_psnr']:+.2f} dB |")
    if fbp.get("noise_std_estimate") is not None:
        lines.append(f"| noise std (from the splits) | {fbp['noise_std_estimate']:.4g} | |")
    if den.get("best_val_loss") is not None:
        lines.append(f"| best N2I validation loss | | {den['best_val_loss']:.4g} |")
    if "psnr" not in fbp:
        lines.append("(no reference given: PSNR/SSIM need a clean volume, --reference)")
    q = metrics.get("quality")
    if q:
        from .quality.report import headline, quality_rows

        lines += ["", headline(q), "", "| quality check | |", "|---|---|"] + quality_rows(q)
    return "\n".join(lines)
