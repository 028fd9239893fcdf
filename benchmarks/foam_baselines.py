"""The foam benchmark's classical baselines, scored against the ground truth, as in the reference:
the FBP of all angles, the FBP of one split, the Gaussian filter and total variation (Chambolle)
tuned by an *oracle* (the parameter maximising PSNR against the ground truth,
:func:`tomodenoise.methods.tuning.oracle_search`), and BM3D (noise level estimated, no oracle).

Each ``score_*`` adds its row to a :class:`FoamScores`; :data:`BASELINES` lists them in table order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tomodenoise.methods.classical import bm3d_filter
from tomodenoise.methods.tuning import oracle_search
from tomodenoise.quality.gaussian import gaussian_slices

from .common import FoamData, Scorer, log

__all__ = ["BASELINES", "FoamScores", "bm3d_estimated", "score_bm3d", "score_fbp", "score_gaussian", "score_split",
           "score_tv", "tv"]


@dataclass
class FoamScores:
    """What the foam benchmark measured, method by method."""

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  #: method -> PSNR, SSIM, seconds, ...
    images: dict[str, np.ndarray] = field(default_factory=dict)  #: method -> its centre slice (the preview)
    volumes: dict[str, np.ndarray] = field(default_factory=dict)  #: tuned filter -> its whole result (curve levels)
    training: dict[str, dict[str, Any]] = field(default_factory=dict)  #: network -> its training record

    def add(self, name: str, metrics: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Record ``name``'s metrics (and centre slice) and log its line."""
        self.metrics[name] = metrics
        if image is not None:
            self.images[name] = image
        log(f"  {name:9s} PSNR {metrics['psnr']:7.2f} dB  SSIM {metrics['ssim']:.3f}  {metrics['seconds']:7.1f} s")


def tv(noisy: np.ndarray, weight: float) -> np.ndarray:
    """Total-variation denoising (Chambolle, scikit-image) of every slice with ``weight``."""
    from skimage.restoration import denoise_tv_chambolle

    return np.stack([denoise_tv_chambolle(s, weight=weight) for s in noisy]).astype(np.float32)


def bm3d_estimated(noisy: np.ndarray) -> tuple[np.ndarray, float]:
    """BM3D of every slice at the noise level scikit-image estimates (mean over the slices)."""
    from skimage.restoration import estimate_sigma

    sigma = float(np.mean([estimate_sigma(s) for s in noisy]))
    return bm3d_filter(noisy, sigma), sigma


def score_fbp(data: FoamData, scores: FoamScores) -> None:
    """The FBP of the noisy projections, all angles."""
    scores.add("fbp", data.scorer.score(data.noisy, data.recon_seconds["fbp"], cached=data.recon_cached),
               data.noisy[data.centre])


def score_split(data: FoamData, scores: FoamScores) -> None:
    """The FBP of the first split's angles."""
    scores.add("split", data.scorer.score(data.splits[0], data.recon_seconds["split"], cached=data.recon_cached))


def _tuned(name: str, data: FoamData, scores: FoamScores, filt: Callable[[np.ndarray, float], np.ndarray],
           search: Callable[[], tuple[float, float, list[tuple[float, float]]]], param: str, t0: float) -> None:
    """Apply ``filt`` with the oracle's best parameter to every slice and record the row."""
    best, _, tried = search()
    t1 = time.perf_counter()
    img = filt(data.noisy, best)
    t_one = time.perf_counter() - t1
    metrics = data.scorer.score(img, time.perf_counter() - t0, **{param: best}, seconds_single=t_one,
                                tuning=f"oracle: {param} maximising PSNR vs ground truth",
                                grid=[[float(a), float(b)] for a, b in tried])
    scores.volumes[name] = img
    scores.add(name, metrics, img[data.centre])


def score_gaussian(data: FoamData, scores: FoamScores) -> None:
    """The Gaussian filter, sigma tuned by the oracle on every slice."""
    t0 = time.perf_counter()
    grid = np.geomspace(0.5, 12.0, 12)
    _tuned("gaussian", data, scores, gaussian_slices,
           lambda: oracle_search(lambda s: data.scorer.psnr(gaussian_slices(data.noisy, s)), grid, refine=4),
           "sigma", t0)


def score_tv(data: FoamData, scores: FoamScores) -> None:
    """Total variation, the weight tuned by the oracle on (at most) the 8 central slices."""
    t0 = time.perf_counter()
    n = len(data.rows)
    grid = data.scorer.data_range * np.geomspace(0.05, 3.0, 8)  # the weight in the image's units
    tune_idx = np.arange(n)
    if n > 8:  # tune on the 8 central slices, apply to all
        tune_idx = np.arange(data.centre - 4, data.centre + 4).clip(0, n - 1)
    sub = Scorer(data.clean[tune_idx], 0)
    sub.data_range = data.scorer.data_range
    _tuned("tv", data, scores, tv,
           lambda: oracle_search(lambda w: sub.psnr(tv(data.noisy[tune_idx], w)), grid, refine=3), "weight", t0)


def score_bm3d(data: FoamData, scores: FoamScores) -> None:
    """BM3D at the estimated noise level (no ground truth)."""
    t0 = time.perf_counter()
    img, sigma = bm3d_estimated(data.noisy)
    scores.add("bm3d", data.scorer.score(img, time.perf_counter() - t0, sigma_psd=sigma,
                                         tuning="sigma from skimage.restoration.estimate_sigma (no ground truth)"),
               img[data.centre])


#: The classical rows of the foam benchmark, in the order they run.
BASELINES: dict[str, Callable[[FoamData, FoamScores], None]] = {
    "fbp": score_fbp, "split": score_split, "gaussian": score_gaussian, "tv": score_tv, "bm3d": score_bm3d,
}
