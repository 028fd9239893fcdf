"""Classical denoisers of the foam benchmark, tuned by an oracle (the ground truth), as in the
reference: Gaussian filter, total variation (Chambolle), BM3D (sigma estimated, no oracle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

def oracle_search(evaluate: Callable[[float], float], grid: Sequence[float], refine: int = 4,
                   log: bool = True) -> tuple[float, float, list[tuple[float, float]]]:
    """Maximise ``evaluate`` over ``grid``, then refine between the best point's neighbours.

    A maximum at an edge of the grid extends the grid outwards (up to 4 times).
    Returns ``(best_param, best_value, all (param, value) pairs)``.
    """
    tried: dict[float, float] = {}

    def ev(p: float) -> float:
        p = float(p)
        if p not in tried:
            tried[p] = float(evaluate(p))
        return tried[p]

    grid = sorted(float(g) for g in grid)
    for g in grid:
        ev(g)
    for _ in range(4):  # extend at the edges
        best = max(tried, key=tried.get)
        pts = sorted(tried)
        if best == pts[-1]:
            ratio = pts[-1] / pts[-2] if log else None
            ev(pts[-1] * ratio if log else 2 * pts[-1] - pts[-2])
        elif best == pts[0]:
            ratio = pts[1] / pts[0] if log else None
            ev(pts[0] / ratio if log else max(1e-6, 2 * pts[0] - pts[1]))
        else:
            break
    best = max(tried, key=tried.get)
    pts = sorted(tried)
    i = pts.index(best)
    lo, hi = pts[max(i - 1, 0)], pts[min(i + 1, len(pts) - 1)]
    if refine > 0 and hi > lo:
        cand = np.geomspace(lo, hi, refine + 2)[1:-1] if log and lo > 0 else np.linspace(lo, hi, refine + 2)[1:-1]
        for c in cand:
            ev(c)
    best = max(tried, key=tried.get)
    return best, tried[best], sorted(tried.items())


def gaussian(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(s, sigma=sigma, mode="reflect") for s in noisy]).astype(np.float32)


def tv(noisy: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(s, weight=weight) for s in noisy]).astype(np.float32)


def bm3d_denoise(noisy: np.ndarray) -> tuple[np.ndarray, float]:
    import bm3d
    from skimage.restoration import estimate_sigma

    sigma = float(np.mean([estimate_sigma(s) for s in noisy]))
    return np.stack([bm3d.bm3d(s, sigma_psd=sigma) for s in noisy]).astype(np.float32), sigma
