"""Pictures for people: PNG previews of FBP, denoised and their difference; grids over time
steps or channels; spectra of a few pixels (XRD-CT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _limits(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def write_previews(out_dir: str | Path, fbp: np.ndarray, denoised: np.ndarray, *, n: int = 3,
                   title: str = "", extra: dict[str, np.ndarray] | None = None) -> list[Path]:
    """Write ``n`` preview slices (evenly spaced in z) as PNG: FBP | denoised | difference.

    Both images of a row share one grey scale (percentiles of the FBP) so they compare
    fairly; the difference has a symmetric scale. ``extra`` adds columns (e.g. ``clean``).
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
        cols += [(k, np.asarray(v).reshape(-1, *np.shape(v)[-2:])[z]) for k, v in (extra or {}).items()]
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


def write_grid(path: str | Path, rows: dict[str, np.ndarray], col_titles: list[str], *, title: str = "",
               share_with: str | None = None) -> Path:
    """A grid of images: one row per entry of ``rows`` (each ``(n_cols, y, x)``), one shared grey
    scale per column (percentiles of the ``share_with`` row, default the first): e.g. truth, FBP
    and denoised over a few time steps, or over a few diffraction channels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(rows)
    ref = rows[share_with or names[0]]
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
