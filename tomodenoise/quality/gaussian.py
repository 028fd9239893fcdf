"""The quick Gaussian baseline: an in-plane Gaussian filter whose sigma is tuned on the N2I loss.

The N2I loss ``mean((f(input) - target)^2)`` over split pairs with independent noise ranks
denoisers ``f`` by their error to the clean image, up to a constant (the target's noise
variance; Hendriksen et al. 2020). So the sigma that minimises it is the sigma that minimises
the error to the clean image, with no ground truth: the baseline every network must beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SIGMAS", "gaussian_slices", "tune_gaussian"]

#: Sigmas tried (pixels), refined around the best; 0 is the input itself.
SIGMAS: tuple[float, ...] = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.7, 8.0, 11.3, 16.0)


def gaussian_slices(images: np.ndarray, sigma: float) -> np.ndarray:
    """An in-plane Gaussian filter (over the last two axes) of ``images``; ``sigma`` 0: a copy."""
    from scipy.ndimage import gaussian_filter

    a = np.asarray(images, dtype=np.float32)
    if sigma <= 0:
        return a.copy()
    s = [0.0] * (a.ndim - 2) + [float(sigma), float(sigma)]
    return gaussian_filter(a, sigma=s, mode="reflect").astype(np.float32)


def _loss(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], sigma: float,
          mask: np.ndarray | None) -> float:
    total, n = 0.0, 0
    for x, t in zip(inputs, targets):
        d = gaussian_slices(x, sigma) - np.asarray(t, dtype=np.float32)
        if mask is not None:
            d = d[..., mask]
        total += float(np.sum(d.astype(np.float64) ** 2))
        n += d.size
    return total / max(n, 1)


def tune_gaussian(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                  sigmas: Sequence[float] = SIGMAS, mask: np.ndarray | None = None,
                  refine: int = 3) -> tuple[float, float, list[tuple[float, float]]]:
    """The sigma minimising the N2I loss of ``gaussian(input_j) -> target_j`` over all pairs.

    Parameters
    ----------
    inputs, targets : sequences of arrays (..., y, x)
        Pairs with independent noise (e.g. the X:1 input of split j and split j).
    sigmas : sequence of float
        Grid (pixels); the best point is refined between its neighbours (log spacing).
    mask : bool array (y, x), optional
        Pixels that count (e.g. the field-of-view disk).

    Returns
    -------
    sigma, loss, tried
        The best sigma, its N2I loss (mean squared difference, the data's units) and every
        ``(sigma, loss)`` tried, sorted by sigma.
    """
    tried: dict[float, float] = {}

    def ev(s: float) -> float:
        s = float(s)
        if s not in tried:
            tried[s] = _loss(inputs, targets, s, mask)
        return tried[s]

    for s in sigmas:
        ev(s)
    pts = sorted(tried)
    best = min(tried, key=tried.get)
    i = pts.index(best)
    lo, hi = pts[max(i - 1, 0)], pts[min(i + 1, len(pts) - 1)]
    if refine > 0 and hi > lo > 0:
        for c in np.geomspace(lo, hi, refine + 2)[1:-1]:
            ev(c)
    best = min(tried, key=tried.get)
    return best, tried[best], sorted(tried.items())
