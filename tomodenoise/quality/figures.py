"""Three figures of a denoised volume that need no ground truth: contrast kept, edge gradient
kept and noise removed, each against the FBP (the mean of the K split reconstructions).

On the middle 40 % of the slices:

- the object mask is Otsu's threshold of the FBP smoothed with a Gaussian of sigma 2 px,
  eroded 2 px in-plane (the core); the background is the pixels at least 6 px from the core,
  between 35 % and 80 % of the field-of-view radius;
- contrast kept = (mean of denoised in the core - mean in the background) / (the same for the FBP);
- edge gradient kept = mean gradient magnitude of the denoised slice on the object's boundary
  band (mask dilated 2 px minus eroded 2 px) / the same for the FBP smoothed with sigma 1 px;
- noise removed = std of (FBP - denoised) in the background / the FBP's noise std there,
  estimated from the splits as std(split_i - split_j) / sqrt(2K), averaged over pairs
  (1: all of the noise and nothing else; well above 1: signal went too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np

__all__ = ["QualityFigures", "object_masks", "quality_figures"]


@dataclass
class QualityFigures:
    contrast_kept: float | None
    edge_gradient_kept: float | None
    noise_removed: float | None
    slices: list[int]
    object_fraction: float
    background_pixels: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _disk(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= r * r + 0.5


def middle_slices(n: int, fraction: float = 0.4) -> np.ndarray:
    """The middle ``fraction`` of ``n`` slices (at least one)."""
    m = max(1, int(round(fraction * n)))
    start = (n - m) // 2
    return np.arange(start, start + m)


def object_masks(fbp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mask, core, band, background)`` for slices ``fbp`` (z, y, x): see the module doc."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    fbp = np.asarray(fbp, dtype=np.float32)
    nz, ny, nx = fbp.shape
    smooth = ndi.gaussian_filter(fbp, sigma=(0, 2, 2))
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)
    fov = min(ny, nx) / 2
    inside = r <= fov
    thr = threshold_otsu(smooth[:, inside])
    mask = (smooth > thr) & inside[None]
    d2 = _disk(2)[None]
    core = ndi.binary_erosion(mask, structure=d2)
    band = ndi.binary_dilation(mask, structure=d2) & ~core
    dist = np.stack([ndi.distance_transform_edt(~m) if m.any() else np.full(m.shape, np.inf) for m in core])
    ring = (r >= 0.35 * fov) & (r <= 0.8 * fov)
    background = (dist >= 6) & ring[None]
    return mask, core, band, background


def _gradient(img: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(np.asarray(img, dtype=np.float32), axis=(-2, -1))
    return np.hypot(gy, gx)


def quality_figures(splits: np.ndarray, denoised: np.ndarray, slices: np.ndarray | None = None) -> QualityFigures:
    """The three figures of ``denoised`` (z, y, x) against the FBP of ``splits`` (K, z, y, x).

    ``slices``: which slices to use (default the middle 40 %).
    """
    from scipy import ndimage as ndi

    splits = np.asarray(splits, dtype=np.float32)
    k, nz = splits.shape[:2]
    idx = middle_slices(nz) if slices is None else np.asarray(slices, dtype=np.int64)
    sp = splits[:, idx]
    den = np.asarray(denoised, dtype=np.float32)[idx]
    fbp = sp.mean(axis=0)
    mask, core, band, bg = object_masks(fbp)
    n_bg = int(bg.sum())
    contrast = edge = noise = None
    if core.any() and n_bg:
        c_fbp = float(fbp[core].mean() - fbp[bg].mean())
        c_den = float(den[core].mean() - den[bg].mean())
        contrast = c_den / c_fbp if abs(c_fbp) > 0 else None
    if band.any():
        ref = _gradient(ndi.gaussian_filter(fbp, sigma=(0, 1, 1)))[band].mean()
        edge = float(_gradient(den)[band].mean() / ref) if ref > 0 else None
    if n_bg > 1:
        pairs = list(combinations(range(k), 2))
        noise_fbp = float(np.mean([np.std((sp[i] - sp[j])[bg]) for i, j in pairs]) / np.sqrt(2 * k))
        if noise_fbp > 0:
            noise = float(np.std((fbp - den)[bg]) / noise_fbp)
    return QualityFigures(contrast_kept=contrast, edge_gradient_kept=edge, noise_removed=noise,
                          slices=[int(i) for i in idx], object_fraction=float(mask.mean()), background_pixels=n_bg)
