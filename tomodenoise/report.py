"""Pictures for people: PNG previews of FBP, denoised and their difference."""

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
