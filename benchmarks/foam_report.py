"""The foam benchmark's methods and what it reports: the table against the published figures,
the margin of the best network over the best classical filter, the time to quality of each
network, the preview, and ``results.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .common import PUBLISHED, TARGET_MARGIN_DB, machine_line
from .n2i import time_to_reach

__all__ = ["ALL_METHODS", "DEFAULT_METHODS", "N2I_METHODS", "QUICK_TARGET", "format_table", "margin_summary",
           "render_report", "time_to_quality", "write_preview"]

#: Methods run by default, in table order.
DEFAULT_METHODS: tuple[str, ...] = ("fbp", "split", "gaussian", "tv", "n2i")
#: Every method the benchmark knows (``bm3d`` is slow on a CPU; the fixed-recipe networks are variants: opt-in).
ALL_METHODS: tuple[str, ...] = DEFAULT_METHODS + ("n2i_msd", "n2i_unet", "bm3d")
#: ``n2i`` is ``tomodenoise run``'s own defaults; the others are explicit variants of it.
N2I_METHODS: dict[str, str] = {"n2i": "msd", "n2i_msd": "msd", "n2i_unet": "unet"}
#: Time-to-quality targets of the foam benchmark: this PSNR [dB] within this many training minutes.
QUICK_TARGET = (20.5, 5.0)


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table: method | PSNR | SSIM | seconds | published reference."""
    lines = ["| method | PSNR [dB] | SSIM | PSNR centre slice [dB] | seconds | published (PSNR / SSIM) |",
             "|---|---:|---:|---:|---:|---|"]
    for name in ALL_METHODS:
        m = metrics.get(name)
        if not m:
            continue
        pub = PUBLISHED.get("n2i_msd" if name == "n2i" else name)
        if pub:
            ref = f"{pub['psnr']:.2f} dB" + (f" / {pub['ssim']:.2f}" if "ssim" in pub else "") + f" ({pub['where']})"
        else:
            ref = "-"
        note = ""
        if "sigma" in m:
            note = f" (sigma {m['sigma']:.2f})"
        elif "weight" in m:
            note = f" (weight {m['weight']:.3g})"
        lines.append(f"| {name}{note} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['psnr_centre_slice']:.2f} | "
                     f"{m['seconds']:.0f} | {ref} |")
    return "\n".join(lines)


def margin_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The best network's PSNR margin over the best of Gaussian and TV, and whether it meets the target."""
    n2i = {k: metrics[k]["psnr"] for k in N2I_METHODS if k in metrics}
    base = {k: metrics[k]["psnr"] for k in ("gaussian", "tv") if k in metrics}
    bb = max(base, key=base.get) if base else None
    if not n2i or not base:
        return {"best_n2i": None, "best_classical": bb, "best_classical_psnr": base.get(bb), "margin_db": None,
                "meets_target": None, "target_db": TARGET_MARGIN_DB}
    bn = max(n2i, key=n2i.get)
    margin = n2i[bn] - base[bb]
    return {"best_n2i": bn, "best_classical": bb, "best_classical_psnr": base[bb], "margin_db": margin,
            "meets_target": bool(margin >= TARGET_MARGIN_DB), "target_db": TARGET_MARGIN_DB}


def time_to_quality(training: dict[str, Any], classical_on_curve: float | None = None) -> dict[str, Any]:
    """Per network, from its curve: the best PSNR within 5 and 15 training minutes and the
    seconds to reach :data:`QUICK_TARGET` and the best classical filter + 4 dB (on the
    curve's slices: ``classical_on_curve`` is the classical filter's PSNR there)."""
    level, quick_minutes = QUICK_TARGET
    out: dict[str, Any] = {}
    for name, info in training.items():
        curve = info["curve"]

        def best_within(minutes: float) -> float | None:
            vals = [p["psnr"] for p in curve if p["seconds"] <= minutes * 60 + 1e-6]
            return max(vals) if vals else None

        row = {"psnr_5min": best_within(quick_minutes), "psnr_15min": best_within(15.0),
               f"seconds_to_{level:g}dB": time_to_reach(curve, level)}
        if classical_on_curve is not None:
            row["classical_on_curve_slices"] = classical_on_curve
            row["seconds_to_classical_plus_4dB"] = time_to_reach(curve, classical_on_curve + TARGET_MARGIN_DB)
        out[name] = row
    return out


def write_preview(path: Path, images: dict[str, np.ndarray], clean: np.ndarray, title: str) -> None:
    """The clean slice and every method's centre slice side by side, one grey scale (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["clean"] + [n for n in ("fbp", "gaussian", "tv", "n2i", "n2i_msd", "n2i_unet", "bm3d") if n in images]
    vmin, vmax = float(clean.min()), float(clean.max())
    ncol = 3 if len(names) > 4 else len(names)
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 4.5 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, n in zip(axes.ravel(), names):
        ax.imshow(clean if n == "clean" else images[n], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(n, fontsize=11)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _time_to_quality_table(ttq: dict[str, Any]) -> list[str]:
    level = QUICK_TARGET[0]
    lines = ["", "Time to quality (PSNR of the curve's central slices, training minutes; `time_to_quality.png`):", "",
             f"| network | best PSNR within 5 min | within 15 min | minutes to {level:g} dB | "
             "minutes to best classical + 4 dB |", "|---|---:|---:|---:|---:|"]

    def fmt(v: float | None, scale: float = 1.0) -> str:
        return "not reached" if v is None else f"{v / scale:.2f}"

    for name, row in ttq.items():
        lines.append(f"| {name} | {fmt(row['psnr_5min'])} | {fmt(row['psnr_15min'])} | "
                     f"{fmt(row[f'seconds_to_{level:g}dB'], 60)} | "
                     f"{fmt(row.get('seconds_to_classical_plus_4dB'), 60)} |")
    return lines + [""]


def render_report(metrics: dict[str, Any]) -> str:
    """``results.md``: the table, the margin's verdict, each network's training, the time to quality."""
    meta = metrics["meta"]
    s = meta["summary"]
    lines = [format_table(metrics), ""]
    if s["margin_db"] is not None:
        verdict = "MEETS" if s["meets_target"] else "does NOT meet"
        lines.append(f"Best N2I ({s['best_n2i']}) vs best classical ({s['best_classical']}): "
                     f"{s['margin_db']:+.2f} dB -> {verdict} the target (>= {s['target_db']:g} dB).")
    for name, info in meta["training"].items():
        lines.append(f"{name}: {info['model']} {info['params']} ({info['n_parameters']} parameters), "
                     f"{info['epochs_run']} epochs ({info['steps']} steps) in {info['training_seconds'] / 60:.1f} min "
                     f"of training, best epoch {info['best_epoch']}, patches {info['patch_size']}, batch "
                     f"{info['batch_size']}, lr {info['lr']:g} ({info['schedule']}); inference "
                     f"{info['inference_seconds']:.0f} s.")
    if s.get("time_to_quality"):
        lines += _time_to_quality_table(s["time_to_quality"])
    lines.append(f"Slices: {meta['n_slices']} (detector rows {meta['slice_indices'][0]}..{meta['slice_indices'][-1]}); "
                 f"phantom: {meta['phantom']}; data_range {meta['data_range']:.4f}.")
    lines.append(f"Machine: {machine_line(meta['machine'])}.")
    lines.append(f"Date: {meta['date']}. Total {meta['total_seconds'] / 60:.1f} min.")
    lines.append(f"Reproduce: `{meta['command']}`")
    return "\n".join(lines)
