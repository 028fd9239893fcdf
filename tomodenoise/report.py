"""What a run's report shows people: its figures as Markdown, and its pictures.

The figures of ``<store>/report/metrics.json`` are rendered once, by :func:`metrics_lines`: the
quality verdict first, PSNR and SSIM (with a reference), per time step and per channel, the noise
estimate, the quality section (:mod:`tomodenoise.quality.report`) and the seconds of each stage.
The console's table (:func:`tomodenoise.summary.metrics_table`), ``report.md`` and the Prefect
UI's report artifact (``tasks.artifacts``) all show these lines; the report page
(:func:`report_markdown`) adds the pictures, linked (report.md) or embedded (the UI).

The pictures: PNG previews of FBP, denoised and their difference; grids over time steps or
channels; spectra of a few pixels (XRD-CT). The centre-of-rotation check the UI shows before the
long work has its own page (:func:`centre_preview_markdown`).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .quality.report import fmt, quality_markdown

__all__ = ["CENTRE_PREVIEW_WIDTH", "MAX_EMBED_BYTES", "PREVIEW_WIDTH", "REPORT_FIGURES", "centre_preview_markdown",
           "metrics_lines", "png_data_uri", "report_markdown", "report_pngs", "spectrum_pixels", "write_grid",
           "write_previews", "write_spectra"]

PREVIEW_WIDTH = 400  # pixels; embedded previews are downscaled to this width
MAX_EMBED_BYTES = 900_000  # total base64 of embedded previews (keeps the UI artifact < ~1 MB)
CENTRE_PREVIEW_WIDTH = 1100  # pixels: the centre preview is a wide grid; narrower hides its differences
#: The report's pictures besides the previews ``preview_z*.png``, in the order shown, with captions.
REPORT_FIGURES = {"time_strip.png": "time steps (truth | FBP | denoised)", "spectra.png": "spectra of a few pixels",
                  "channel_maps.png": "channel maps"}
_PER = (("per_time", "time", "time step"), ("per_channel", "channel", "channel"))


# --- the figures ---------------------------------------------------------------------------
def metrics_lines(m: dict[str, Any]) -> list[str]:
    """The figures of one run's ``metrics.json`` as Markdown lines, the quality verdict first."""
    q = m.get("quality") or {}
    lines = [f"**quality: {q.get('status', 'ok')}**", ""] if q else []
    lines += ["| metric | FBP | denoised |", "|---|---|---|"] + _summary_rows(m)
    if "psnr" not in (m.get("fbp") or {}):
        lines += ["", "No reference given: PSNR and SSIM need a clean volume (`--reference`, the flow's `reference`)."]
    for key, column, what in _PER:
        if m.get(key):
            lines += ["", f"PSNR per {what} (dB):", "", f"| {column} | FBP | denoised |", "|---|---|---|"]
            lines += [f"| {fmt(e[column], '.4g')} | {fmt(e['fbp_psnr'])} | {fmt(e['denoised_psnr'])} |" for e in m[key]]
    if q:
        lines += [""] + quality_markdown(q)[:-1]  # without its closing blank line
    return lines + _stage_rows(m.get("stages") or {})


def _summary_rows(m: dict[str, Any]) -> list[str]:
    """The rows of the metrics table: PSNR, SSIM, their spread over time steps or channels, the
    noise estimate and the best validation loss."""
    fbp, den = m.get("fbp") or {}, m.get("denoised") or {}
    rows = [f"| {label} | {fmt(fbp.get(key), spec)} | {fmt(den.get(key), spec)} |"
            for key, label, spec in (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f"),
                                     ("psnr_mean_over_channels", "PSNR, mean over channels", ".2f"))
            if key in fbp or key in den]
    for key, _, what in _PER:
        gains = [e["denoised_psnr"] - e["fbp_psnr"] for e in m.get(key) or []]
        if gains:
            rows.append(f"| PSNR gain per {what} ({len(gains)}) | | {min(gains):+.2f} to {max(gains):+.2f} dB |")
    if fbp.get("noise_std_estimate") is not None:
        rows.append(f"| noise std (estimated from the splits) | {fmt(fbp['noise_std_estimate'], '.4g')} | |")
    if den.get("best_val_loss") is not None:
        rows.append(f"| best N2I validation loss | | {fmt(den['best_val_loss'], '.4g')} |")
    return rows


def _stage_rows(stages: dict[str, Any]) -> list[str]:
    """The seconds of each stage and their total, as a table (nothing when none was recorded)."""
    if not stages:
        return []
    total = sum(float(s) for s in stages.values() if isinstance(s, (int, float)))
    rows = [f"| {name} | {fmt(sec, '.1f')} |" for name, sec in stages.items()]
    return ["", "| stage | seconds |", "|---|---|"] + rows + [f"| **total** | **{total:.1f}** |"]


# --- the report page ------------------------------------------------------------------------
def report_pngs(report_dir: str | Path) -> list[Path]:
    """The report's pictures in ``report_dir``: the previews, then :data:`REPORT_FIGURES` that exist."""
    report_dir = Path(report_dir)
    return sorted(report_dir.glob("preview_z*.png")) + [report_dir / n for n in REPORT_FIGURES
                                                         if (report_dir / n).exists()]


def png_data_uri(path: str | Path, width: int = PREVIEW_WIDTH) -> str:
    """The PNG at ``path`` downscaled to ``width`` pixels (never up), as a data URI."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def report_markdown(store_root: str | Path, *, embed_bytes: int | None = None) -> str:
    """The report page of a store, from ``<store>/report/`` (metrics.json and the pictures).

    ``embed_bytes`` None: the pictures are linked by file name (``report.md`` beside them).
    Otherwise (the Prefect UI's artifact) they are embedded as downscaled data URIs up to
    ``embed_bytes`` of base64 in all, the others listed by path, and the output store named.
    """
    root = Path(store_root).resolve()
    m = json.loads((root / "report" / "metrics.json").read_text())
    lines = [f"# tomodenoise report: {root.name}", ""] + metrics_lines(m)
    pngs = report_pngs(root / "report")
    if pngs:
        lines += ["", "## Previews", ""]
        if pngs[0].name.startswith("preview_z"):
            lines += ["FBP | denoised | difference (FBP - denoised)", ""]
        lines += _picture_lines(pngs, embed_bytes)
    if embed_bytes is not None:
        lines += ["", f"Output store: `{root}`", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _picture_lines(pngs: list[Path], embed_bytes: int | None) -> list[str]:
    """Markdown images of ``pngs``: linked by file name, or embedded up to ``embed_bytes`` of base64."""
    lines, used = [], 0
    for png in pngs:
        caption = [f"{REPORT_FIGURES[png.name]}:", ""] if png.name in REPORT_FIGURES else []
        if embed_bytes is None:
            lines += caption + [f"![{png.stem}]({png.name})", ""]
            continue
        uri = png_data_uri(png)
        if used + len(uri) > embed_bytes:
            lines += [f"- `{png}` (not embedded: the report is at its size limit)", ""]
            continue
        used += len(uri)
        lines += caption + [f"![{png.stem}]({uri})", ""]
    return lines


def centre_preview_markdown(png: str | Path) -> str:
    """The centre-of-rotation artifact's Markdown: the numbers, the remedy and the embedded
    ``report/preview_centre.png`` (:func:`tomodenoise.preview.store_preview`)."""
    path = Path(png).resolve()
    sidecar = path.with_suffix(".json")
    info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    uri = png_data_uri(path, CENTRE_PREVIEW_WIDTH)
    if len(uri) > MAX_EMBED_BYTES:
        uri = png_data_uri(path, 2 * PREVIEW_WIDTH)
    centre = fmt(info.get("center"))
    lines = [f"# Centre of rotation: {path.parent.parent.name}", "",
             f"Centre **{centre}** ({info.get('center_method', 'n/a')}); the score curve's minimum "
             f"{fmt(info.get('curve_minimum'))}. The red panel should be the sharpest, and the curve's "
             "minimum at the red line.", "",
             "Wrong centre? Rerun with `--set preprocess.center=<value>` (e.g. the sharpest panel's centre): "
             "before the long work, not after it.", "",
             f"![centre preview]({uri})", "", f"`{path}`", ""]
    return "\n".join(lines)


# --- the pictures ---------------------------------------------------------------------------
def _limits(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def write_previews(out_dir: str | Path, fbp: np.ndarray, denoised: np.ndarray, *, n: int = 3,
                   title: str = "") -> list[Path]:
    """Write ``n`` preview slices (evenly spaced in z) as PNG: FBP | denoised | difference.

    Both images of a row share one grey scale (percentiles of the FBP) so they compare
    fairly; the difference has a symmetric scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fbp = np.asarray(fbp).reshape(-1, *np.shape(fbp)[-2:])
    denoised = np.asarray(denoised).reshape(-1, *np.shape(denoised)[-2:])
    nz = fbp.shape[0]
    if n <= 0 or nz == 0:
        return []
    zs = sorted(set(np.linspace(0, nz - 1, min(n, nz)).round().astype(int).tolist()))
    paths = []
    for z in zs:
        cols = [("FBP", fbp[z]), ("denoised", denoised[z])]
        vmin, vmax = _limits(cols[0][1])
        diff = fbp[z] - denoised[z]
        dl = float(np.percentile(np.abs(diff), 99.5)) or 1.0
        fig, axes = plt.subplots(1, len(cols) + 1, figsize=(4 * (len(cols) + 1), 4.3), constrained_layout=True)
        for ax, (name, img) in zip(axes, cols):
            ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_title(name)
        im = axes[-1].imshow(diff, cmap="RdBu_r", vmin=-dl, vmax=dl)
        axes[-1].set_title("FBP - denoised")
        fig.colorbar(im, ax=axes[-1], shrink=0.8)
        for ax in axes:
            ax.set_axis_off()
        fig.suptitle(f"{title} slice {z}".strip())
        path = out_dir / f"preview_z{z:04d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def write_grid(path: str | Path, rows: dict[str, np.ndarray], col_titles: list[str], *, title: str = "") -> Path:
    """A grid of images: one row per entry of ``rows`` (each ``(n_cols, y, x)``), one shared grey
    scale per column (percentiles of the first row): e.g. truth, FBP and denoised over a few time
    steps, or over a few diffraction channels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(rows)
    ref = rows[names[0]]
    n_cols = len(col_titles)
    fig, axes = plt.subplots(len(names), n_cols, figsize=(2.6 * n_cols, 2.6 * len(names) + 0.6),
                             constrained_layout=True, squeeze=False)
    for j in range(n_cols):
        vmin, vmax = _limits(np.asarray(ref[j]))
        for i, name in enumerate(names):
            ax = axes[i, j]
            ax.imshow(np.asarray(rows[name][j]), cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_titles[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(name)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_spectra(path: str | Path, channels: np.ndarray, spectra: dict[str, np.ndarray], labels: list[str], *,
                  channel_label: str = "channel", title: str = "") -> Path:
    """The spectrum of a few pixels: one panel per pixel (``labels``), one line per entry of
    ``spectra`` (each ``(n_pixels, channel)``), e.g. truth, FBP and denoised."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.2 * n + 0.6), constrained_layout=True, squeeze=False)
    styles = {"truth": dict(color="k", lw=1.5), "FBP": dict(color="tab:gray", lw=0.8, alpha=0.8),
              "denoised": dict(color="tab:red", lw=1.2)}
    for i, label in enumerate(labels):
        ax = axes[i, 0]
        for name, s in spectra.items():
            ax.plot(channels, np.asarray(s)[i], label=name, **styles.get(name, {}))
        ax.set_ylabel("intensity")
        ax.set_title(label, fontsize=9)
        if i == 0:
            ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(channel_label)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def spectrum_pixels(maps: np.ndarray, n: int = 3, min_distance: int = 4) -> list[tuple[int, int]]:
    """Pixels worth a spectrum plot: the brightest pixel of each of the strongest channels of
    ``maps`` ``(channel, y, x)``, at least ``min_distance`` (city-block) apart, ``n`` of them."""
    maps = np.asarray(maps)
    strong = np.argsort(maps.reshape(maps.shape[0], -1).max(axis=1))[::-1]
    pix: list[tuple[int, int]] = []
    for c in strong:
        y, x = np.unravel_index(int(np.argmax(maps[c])), maps.shape[1:])
        if all(abs(int(y) - q[0]) + abs(int(x) - q[1]) > min_distance for q in pix):
            pix.append((int(y), int(x)))
        if len(pix) == n:
            break
    return pix
