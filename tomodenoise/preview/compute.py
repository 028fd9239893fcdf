"""The centre preview's computation: 7 Gaussian-filtered FBPs around a centre and the score curve."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..preprocess.center import centre_scores  # the finder's own score, for the curve

__all__ = ["CURVE_HALF_WIDTH", "CURVE_STEP", "MAX_ANGLES", "MAX_PIXELS", "OFFSETS", "PREVIEW_NAME", "REMEDY", "SPLITS",
           "CentrePreview", "centre_preview", "centre_scores"]

log = logging.getLogger("tomodenoise.preview")

#: Offsets (px) of the panels from the chosen centre.
OFFSETS: tuple[float, ...] = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
#: Side of the reconstructed central region (pixels, full detector resolution).
MAX_PIXELS = 512
#: Most projections used for the panels (evenly subsampled beyond).
MAX_ANGLES = 480
#: Interlaced angle splits of the quick Gaussian's N2I pairs.
SPLITS = 4
#: The score curve spans the chosen centre +- this many pixels ...
CURVE_HALF_WIDTH = 2.0
#: ... in steps of this many pixels.
CURVE_STEP = 0.5
#: The file name in the store's ``report/``.
PREVIEW_NAME = "preview_centre.png"
#: The one-line remedy printed in the title.
REMEDY = "wrong centre? rerun with --set preprocess.center=<value>"


@dataclass
class CentrePreview:
    """The preview's numbers and images.

    Attributes
    ----------
    center : float
        The chosen centre (0-based detector column).
    method : str
        How it was chosen (``find_center``'s ``center_method``, or ``"given"``).
    offsets : numpy.ndarray
        ``(7,)`` px from ``center`` of each panel (:data:`OFFSETS`).
    panels : numpy.ndarray
        ``(7, n, n)`` Gaussian-filtered FBPs of the central region at ``center + offsets``.
    sigma : float
        The quick Gaussian's sigma (px), tuned on the N2I loss at ``center``.
    curve_centres, curve_scores : numpy.ndarray
        The score curve: FBP histogram entropy (lower is sharper) per candidate centre.
    """

    center: float
    method: str
    offsets: np.ndarray
    panels: np.ndarray
    sigma: float
    curve_centres: np.ndarray
    curve_scores: np.ndarray
    score_name: str = "FBP histogram entropy (lower = sharper)"
    n_angles: int = 0
    n_angles_used: int = 0
    n_det: int = 0
    z: int | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def centres(self) -> np.ndarray:
        """``(7,)`` the centre of each panel."""
        return self.center + self.offsets

    @property
    def curve_minimum(self) -> float:
        """The candidate with the lowest score (NaN without a curve)."""
        ok = np.isfinite(self.curve_scores)
        return float(self.curve_centres[ok][np.argmin(self.curve_scores[ok])]) if ok.any() else float("nan")

    def to_json(self) -> dict[str, Any]:
        """The numbers (no images), JSON-serialisable."""
        return {
            "center": round(self.center, 3), "center_method": self.method,
            "panel_centres": [round(float(c), 3) for c in self.centres],
            "sigma": round(self.sigma, 4), "score": self.score_name,
            "curve": [[round(float(c), 3), None if not np.isfinite(s) else round(float(s), 6)]
                      for c, s in zip(self.curve_centres, self.curve_scores)],
            "curve_minimum": round(self.curve_minimum, 3) if np.isfinite(self.curve_minimum) else None,
            "n_angles": self.n_angles, "n_angles_used": self.n_angles_used, "n_det": self.n_det,
            "region": int(self.panels.shape[-1]), "z": self.z, "seconds": round(self.seconds, 2),
            "remedy": REMEDY, **self.extra,
        }


def _subsample(n: int, max_angles: int, k: int) -> np.ndarray:
    """Evenly strided projection indices, at most ``max_angles``, a multiple of ``k`` of them."""
    idx = np.arange(0, n, max(1, math.ceil(n / max_angles)))
    return idx[: (idx.size // k) * k]


def centre_preview(
    sinogram: np.ndarray,
    angles: np.ndarray,
    center: float,
    *,
    curve_sinogram: np.ndarray | None = None,
    method: str = "found",
    offsets: tuple[float, ...] = OFFSETS,
    size: int = MAX_PIXELS,
    max_angles: int = MAX_ANGLES,
    k: int = SPLITS,
    filter: str = "ram-lak",  # noqa: A002 - the recon module's name
    use_gpu: Any = "auto",
    z: int | None = None,
) -> CentrePreview:
    """The centre preview of one slice: 7 Gaussian-filtered FBPs and the score curve.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(angle, det)`` line integrals of the slice to show.
    angles : numpy.ndarray
        ``(angle,)`` radians.
    center : float
        The chosen centre (0-based detector column).
    curve_sinogram : numpy.ndarray, optional
        ``(angle, det)`` the sinogram the centre was found on (the mean of the central
        rows); default ``sinogram``.
    method : str
        How the centre was chosen (for the title).
    offsets, size, max_angles, k
        Panel offsets (px), side of the central region, most projections used, splits.
    filter, use_gpu
        FBP filter and GPU use (:func:`tomodenoise.recon.fbp`).
    z : int, optional
        The detector row shown (for the title).
    """
    from ..quality.gaussian import gaussian_slices, tune_gaussian
    from ..recon import fbp

    t0 = time.perf_counter()
    s = np.asarray(sinogram, dtype=np.float32)
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != a.size:
        raise ValueError(f"sinogram must be (angle, det) with one angle per row: shape {s.shape}, {a.size} angles")
    na, w = s.shape
    idx = _subsample(na, max_angles, k)
    if idx.size < k:
        raise ValueError(f"{na} projections: too few for a preview with {k} splits")
    s, a = s[idx], a[idx]
    n = int(min(w, size))
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    mask = yy ** 2 + xx ** 2 <= (n / 2) ** 2
    c = float(center)

    def rec(sino: np.ndarray, ang: np.ndarray, centre: float) -> np.ndarray:
        centre = min(max(centre, -0.5), w - 0.5)  # within the detector (recon refuses others)
        return fbp(sino, ang, center=centre, n_pixels=n, filter=filter, use_gpu=use_gpu)[0]

    splits = [rec(s[j::k], a[j::k], c) for j in range(k)]
    total = np.sum(splits, axis=0)
    inputs = [(total - sj) / (k - 1) for sj in splits]  # X:1, the mean of the other splits
    sigma, loss, _ = tune_gaussian(inputs, splits, mask=mask)
    log.info("centre preview: quick Gaussian sigma %.3f px (N2I loss %.4g) from %d splits of %d projections",
             sigma, loss, k, idx.size)
    fbps = [total / k if o == 0 else rec(s, a, c + o) for o in offsets]  # mean of equal splits = full FBP
    panels = gaussian_slices(np.stack(fbps), sigma)
    t1 = time.perf_counter()
    centres = c + np.arange(-CURVE_HALF_WIDTH, CURVE_HALF_WIDTH + CURVE_STEP / 2, CURVE_STEP)
    centres = centres[(centres >= 0) & (centres <= w - 1)]
    cs = np.asarray(sinogram if curve_sinogram is None else curve_sinogram)
    scores = centre_scores(cs, angles, centres, first=c) if centres.size else np.array([])
    log.info("centre preview: %d panels of %d px from %d projections in %.1f s, score curve of %d candidates in "
             "%.1f s", len(offsets), n, idx.size, t1 - t0, centres.size, time.perf_counter() - t1)
    return CentrePreview(center=c, method=method, offsets=np.asarray(offsets, dtype=np.float64), panels=panels,
                         sigma=float(sigma), curve_centres=centres, curve_scores=scores, n_angles=na,
                         n_angles_used=int(idx.size), n_det=w, z=z, seconds=time.perf_counter() - t0,
                         extra={"n2i_loss": float(loss)})
