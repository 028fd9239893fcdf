"""The comparison's table (``compare.md``) and picture (``panel.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Scan

__all__ = ["panel_region", "write_report"]


def _f(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def _params(p: dict[str, Any]) -> str:
    shown = {k: v for k, v in p.items() if not isinstance(v, (list, dict)) and k != "tried"}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(shown.items())[:5])


def table(result: dict[str, Any]) -> str:
    """The markdown table of ``result`` (see :func:`tomodenoise.methods.compare.compare`)."""
    has_ref = any(r["psnr"] is not None for r in result["rows"])
    head = ["method", *(["PSNR (dB)", "SSIM"] if has_ref else []), "uPSNR (dB)", "seconds", "training s", "chosen"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        if r["status"] != "ok":
            cells = [r["label"], *([r["status"], ""] if has_ref else []), "-", "-", "-", r["reason"]]
        else:
            cells = [r["label"], *([_f(r["psnr"]), _f(r["ssim"])] if has_ref else []), _f(r["upsnr"]),
                     _f(r["seconds"]), _f(r["train_seconds"]), _params(r["params"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def panel_region(shape: tuple[int, int], size: int = 128) -> tuple[slice, slice]:
    """A central square of at most ``size`` pixels (the same region for every method)."""
    ny, nx = shape
    s = min(size, ny, nx)
    y0, x0 = (ny - s) // 2, (nx - s) // 2
    return slice(y0, y0 + s), slice(x0, x0 + s)


def write_panel(path: Path, scan: Scan, volumes: dict[str, np.ndarray], k: int, result: dict[str, Any]) -> None:
    """One image per method (plus the reference and the FBP) of slice ``k``, same grey scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r["label"]: r for r in result["rows"]}
    images: list[tuple[str, np.ndarray]] = []
    if scan.clean is not None:
        images.append(("reference", scan.clean[k]))
    if "fbp" not in volumes:
        images.append(("FBP (all angles)", scan.fbp()[k]))
    for label, vol in volumes.items():
        r = rows[label]
        sub = f"{_f(r['psnr'], ' dB')} / u{_f(r['upsnr'], ' dB')}" if r["psnr"] is not None else f"u{_f(r['upsnr'], ' dB')}"
        images.append((f"{label}\n{sub}", vol[k]))
    ys, xs = panel_region(images[0][1].shape)
    ref = scan.clean[k] if scan.clean is not None else scan.fbp()[k]
    lo, hi = np.percentile(ref[ys, xs], [1, 99])
    n = len(images)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3.3 * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, images):
        ax.imshow(img[ys, xs], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{result['scan']}: slice {k}, region y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop}", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: dict[str, Any], scan: Scan, volumes: dict[str, np.ndarray], keep: np.ndarray,
                 out: Path) -> None:
    """``compare.md`` (table, rank check, how it was measured) and ``panel.png``."""
    k = int(keep[len(keep) // 2])
    rc = result.get("rank_check")
    lines = [f"# Comparison on {result['scan']}", "",
             f"Volume {tuple(result['shape'])} (z, y, x) from {result['n_angles']} projections; "
             + ("PSNR/SSIM against the reference" if scan.clean is not None else "no reference (uPSNR only)")
             + f" over slices {result['reported_slices']} (slice {result['tune_slice']} is where "
             f"methods tune their parameter), inside the field-of-view disk (SSIM: the square inside it); uPSNR of "
             f"each method run on {result['upsnr_groups'] - 3} of {result['upsnr_groups']} interlaced angle groups "
             "against the FBPs of the other 3 (averaged over their roles); data range "
             f"{result['data_range']:.4g}; {result['steps']} steps for every learned method; seed {result['seed']}, "
             f"device {result['device']}.", "", table(result), ""]
    unresolved = [r["label"] for r in result["rows"] if r["status"] == "ok" and r["upsnr"] is None]
    if unresolved:
        lines += [f"uPSNR '-' ({', '.join(unresolved)}): the uMSE estimate was not positive, i.e. the method's error "
                  "is below what the held-out projections can resolve on this scan (more slices help).", ""]
    if rc:
        lines += [f"uPSNR vs true PSNR over {rc['points']} outputs (methods and snapshots): Spearman "
                  f"{rc['spearman']:.3f} (p = {rc['p_value']:.3g}).", ""]
    lines.append("![panel](panel.png)")
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    if volumes or scan.clean is not None:
        write_panel(out / "panel.png", scan, volumes, k, result)
