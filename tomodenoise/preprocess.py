"""Preprocessing: flat/dark correction, -log, centre of rotation, outliers and rings.

:func:`preprocess` turns a :class:`~tomodenoise.io.RawScan` into sinograms
``(z, angle, det)`` of line integrals plus the centre of rotation (a 0-based detector
column; the middle of a detector of width ``W`` is ``(W - 1) / 2``).

Bad input is refused with a :class:`~tomodenoise.io.ScanError` naming the remedy: a
detector narrower than :data:`~tomodenoise.io.checks.MIN_DET_WIDTH`, angles that are all
the same, flats not brighter than the darks, and more than ``max_clamped_fraction`` (1 %
by default) of the transmission values at or below zero. Projections whose angles are not
monotonic are sorted by angle, with a warning (``info["warnings"]``) and their
acquisition order in ``info["projection_order"]``.

Centre of rotation (:func:`find_center`)
----------------------------------------
Two steps, both written for this package from the literature:

1. **Coarse, from data consistency** (Vo, Atwood and Drakopoulos, "Reliable method for
   calculating the center of rotation in parallel-beam tomography", Opt. Express 22,
   19078, 2014). For a scan covering half a turn, the projection at ``theta + pi`` is the
   projection at ``theta`` mirrored about the rotation axis ``c``. Appending the sinogram,
   mirrored about a candidate ``c``, to itself gives a full-turn sinogram. For the right
   ``c`` it is the sinogram of an object of radius ``R <= W / 2``, whose 2-D Fourier
   transform is (nearly) zero in the double wedge ``|k| > |omega| R`` (``k`` the angular
   harmonic, ``omega`` the detector frequency in rad/pixel); a wrong ``c`` puts a seam in
   it that spreads energy into that wedge. The candidate with the least mean Fourier
   magnitude in the wedge wins: first on a binned detector over the whole search range,
   then around the best candidate on ever finer detectors, down to half-pixel steps at
   full resolution. Scans with unevenly spaced angles are resampled to even ones first.
2. **Fine, from image quality** (Donath et al., "Automated determination of the center of
   rotation in tomography data", JOSA A 23, 1048, 2006): the histogram entropy of an FBP
   reconstruction is smallest at the right centre (sharp edges, no double contours). The
   sinogram is shifted by a band-limited (Fourier) sub-pixel shift so that the candidate
   centre sits in the middle, reconstructed with ASTRA's CPU FBP on a central region of
   interest (Hann filter and a slight Gaussian smoothing, so that noise does not dominate
   the histogram: blur from a wrong centre averages noise away and would lower it), and the entropy minimum is located in half-pixel steps and refined to
   sub-pixel precision by a parabola through the minimum and its neighbours. Only the
   first half turn of a longer scan is used: over a full turn a wrong centre blurs rather
   than doubles edges, and blur can lower the entropy.

``method="vo"`` stops after step 1 (with a parabolic sub-pixel estimate), ``"fbp"`` uses
only image metrics (coarse: the negative fraction of binned-detector reconstructions over
the whole range, which unlike the entropy stays reliable far from the minimum; then step
2), ``"auto"`` (the default) runs step 1 then step 2, and falls back to the ``"fbp"``
coarse search for scans that do not cover half a turn.

Limitations: scans covering less than half a turn give an unreliable centre (a warning is
logged and recorded in ``info["center_warning"]``); give the centre explicitly then. A
centre found at the edge of the search range is flagged the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from .io.base import BAD_FLAT_FRACTION, RawScan
from .io.checks import angle_order, check_angle_span, check_detector_width
from .io.errors import ScanError

__all__ = [
    "Preprocessed",
    "center_search_range",
    "find_center",
    "find_center_pair",
    "flat_dark_correct",
    "minus_log",
    "preprocess",
    "remove_outliers",
    "remove_rings",
]

log = logging.getLogger(__name__)

CenterMethod = Literal["auto", "vo", "fbp", "entropy"]

#: Detector width (pixels) of the binned sinogram of the coarse searches.
COARSE_WIDTH = 128
#: Largest region of interest (pixels) reconstructed for the entropy metric.
ENTROPY_ROI = 320
#: Most angles used by the entropy metric (evenly subsampled beyond).
ENTROPY_MAX_ANGLES = 720
#: Most angles of the resampled half-turn sinogram of the Fourier metric.
VO_MAX_ANGLES = 720
#: Most detector rows averaged into the sinogram used to find the centre.
CENTER_ROWS = 32


@dataclass
class Preprocessed:
    """Sinograms ready for reconstruction.

    Attributes
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` float32 line integrals.
    angles : numpy.ndarray
        ``(angle,)`` float64 radians: in acquisition order when that is monotonic, else
        sorted (then ``info["projection_order"]`` holds the acquisition index of each
        projection).
    center : float
        Centre of rotation, 0-based detector column.
    n_clamped : int
        Number of transmission values clamped to ``log_min`` before the -log.
    info : dict
        JSON-serialisable record of what was done: counts, fractions, the centre method,
        and ``warnings``: a list of one-sentence warnings about the input (each also
        logged on the ``tomodenoise.preprocess`` logger).
    """

    sinogram: np.ndarray
    angles: np.ndarray
    center: float
    n_clamped: int
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# flat/dark correction and -log
# --------------------------------------------------------------------------------------
def _mean_field(a: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=0, dtype=np.float64).astype(np.float32)
    if a.shape != shape:
        raise ValueError(f"{name} must be (n, z, det) or (z, det) with (z, det) = {shape}, got {a.shape}")
    return a


def flat_dark_correct(
    projections: np.ndarray,
    flats: np.ndarray | None,
    darks: np.ndarray | None,
) -> np.ndarray:
    """Flat/dark correction: ``(p - mean dark) / (mean flat - mean dark)``.

    Parameters
    ----------
    projections : numpy.ndarray
        ``(angle, z, det)`` raw intensities.
    flats : numpy.ndarray or None
        ``(n, z, det)`` flat fields (or their ``(z, det)`` mean). None: the projections are
        taken to be normalised already (returned as float32).
    darks : numpy.ndarray or None
        ``(n, z, det)`` dark fields (or their mean); None means zero.

    Returns
    -------
    numpy.ndarray
        ``(angle, z, det)`` float32 transmission. Where the mean flat is not brighter than
        the mean dark (dead pixels) the division is guarded: those pixels get transmission
        1 (zero attenuation) instead of inf/NaN.

    Raises
    ------
    ValueError
        For darks without flats, or fields whose shape does not match.
    """
    p = np.asarray(projections)
    if p.ndim != 3:
        raise ValueError(f"projections must be (angle, z, det), got shape {p.shape}")
    shape = p.shape[1:]
    flat = _mean_field(flats, shape, "flats")
    dark = _mean_field(darks, shape, "darks")
    if flat is None:
        if dark is not None:
            raise ValueError("darks without flats: cannot normalise")
        return np.array(p, dtype=np.float32, copy=True)
    if dark is None:
        dark = np.zeros(shape, dtype=np.float32)
    denom = flat - dark
    good = denom > 0
    inv = np.zeros(shape, dtype=np.float32)
    np.divide(1.0, denom, out=inv, where=good)
    out = np.subtract(p, dark, dtype=np.float32)
    out *= inv
    if not good.all():
        out[:, ~good] = 1.0
    return out


def minus_log(transmission: np.ndarray, min_value: float = 1e-6) -> tuple[np.ndarray, int]:
    """Line integrals ``-log(t)``, with ``t`` clamped from below.

    Parameters
    ----------
    transmission : numpy.ndarray
        Flat/dark-corrected transmission (any shape).
    min_value : float
        Values below it (zero, negative from noise, NaN) are set to it first.

    Returns
    -------
    line_integrals : numpy.ndarray
        float32, same shape.
    n_clamped : int
        How many values were clamped.
    """
    if not min_value > 0:
        raise ValueError(f"min_value must be > 0, got {min_value}")
    t = np.asarray(transmission, dtype=np.float32)
    bad = ~(t >= np.float32(min_value))  # also catches NaN
    n = int(np.count_nonzero(bad))
    out = np.where(bad, np.float32(min_value), t).astype(np.float32, copy=False)
    np.log(out, out=out)
    np.negative(out, out=out)
    return out, n


# --------------------------------------------------------------------------------------
# outliers and rings (optional)
# --------------------------------------------------------------------------------------
def remove_outliers(images: np.ndarray, threshold: float = 0.2, size: int = 3) -> tuple[np.ndarray, int]:
    """Replace isolated outliers (zingers, hot pixels) by the local median.

    A pixel is an outlier when it differs from the median of its ``size x size``
    neighbourhood (in each image) by more than ``threshold`` times that median's magnitude.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, z, det)`` stack (or one ``(z, det)`` image).
    threshold : float
        Relative difference that marks an outlier.
    size : int
        Median filter width (odd).

    Returns
    -------
    filtered : numpy.ndarray
        float32 copy with outliers replaced.
    n_replaced : int
    """
    a = np.asarray(images, dtype=np.float32)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    med = ndimage.median_filter(a, size=(1, size, size), mode="nearest")
    scale = np.maximum(np.abs(med), np.finfo(np.float32).tiny)
    bad = np.abs(a - med) > threshold * scale
    out = np.where(bad, med, a).astype(np.float32, copy=False)
    return (out[0] if squeeze else out), int(np.count_nonzero(bad))


def remove_rings(sinogram: np.ndarray, size: int = 15) -> np.ndarray:
    """Suppress ring artefacts: remove each column's deviation from the smoothed mean profile.

    Stripes in a sinogram (a detector column that reads consistently high or low) become
    rings in the reconstruction. The mean over angles of each column, minus its median
    filtered version along the detector, is the stripe; it is subtracted from the column.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` or ``(angle, det)`` line integrals.
    size : int
        Median filter width along the detector (larger than the stripes, smaller than
        the object's features).

    Returns
    -------
    numpy.ndarray
        float32 corrected copy.
    """
    s = np.asarray(sinogram, dtype=np.float32)
    profile = s.mean(axis=-2, keepdims=True)
    smooth = ndimage.median_filter(profile, size=(1,) * (s.ndim - 1) + (size,), mode="nearest")
    return (s - (profile - smooth)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# centre of rotation
# --------------------------------------------------------------------------------------
def center_search_range(n_det: int, search: float | Sequence[float] = 0.25) -> tuple[float, float]:
    """The candidate centres: ``middle +- search * n_det`` (clipped), or ``search=(lo, hi)``."""
    mid = (n_det - 1) / 2
    if np.ndim(search) == 0:
        frac = float(search)
        if not 0 < frac <= 0.5:
            raise ValueError(f"center search must be a fraction in (0, 0.5] of the width, got {frac}")
        lo, hi = mid - frac * n_det, mid + frac * n_det
    else:
        lo, hi = (float(v) for v in search)
    lo, hi = max(lo, 0.0), min(hi, n_det - 1.0)
    if not lo < hi:
        raise ValueError(f"empty centre search range ({lo}, {hi}) for a detector of {n_det} columns")
    return lo, hi


def _bin_columns(s: np.ndarray, b: int) -> np.ndarray:
    if b == 1:
        return s
    w = (s.shape[1] // b) * b
    return s[:, :w].reshape(s.shape[0], w // b, b).mean(axis=2)


def _half_turn(sino: np.ndarray, angles: np.ndarray, max_angles: int) -> np.ndarray | None:
    """The sinogram resampled to uniform angles over ``[a0, a0 + pi)``; None if not covered."""
    a = np.asarray(angles, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    a = a[order] - a[order][0]
    s = sino[order]
    if a.size < 4:
        return None
    step = float(np.median(np.diff(a)))
    if not step > 0:
        return None
    keep = a < np.pi - 0.25 * step
    a, s = a[keep], s[keep]
    a, first = np.unique(a, return_index=True)
    s = s[first]
    if a.size < 4 or a[-1] + 1.5 * step < np.pi:
        return None
    n = min(a.size, max_angles)
    grid = np.arange(n) * (np.pi / n)
    if n == a.size and np.allclose(a, grid, atol=1e-3 * step):
        return s
    i = np.clip(np.searchsorted(a, grid, side="right") - 1, 0, a.size - 1)
    j = np.minimum(i + 1, a.size - 1)
    span = np.where(j > i, a[j] - a[i], 1.0)
    w = np.clip((grid - a[i]) / span, 0.0, 1.0)[:, None]
    return (1 - w) * s[i] + w * s[j]


def _vo_metric(s: np.ndarray, shifts: np.ndarray, ratio: float = 1.0, drop: int = 2) -> np.ndarray:
    """Mean Fourier magnitude in the empty double wedge, per integer mirror shift ``d``.

    ``d = 2 c - (W - 1)``: the mirrored sinogram is shifted so that it mirrors about ``c``.
    """
    na, w = s.shape
    s = s - s.mean()
    flipped = s[:, ::-1]
    k = np.abs(np.fft.fftfreq(2 * na, 1.0 / (2 * na)))[:, None]
    f = np.fft.rfftfreq(w, 1.0 / w)[None, :]
    mask = (k > np.pi * ratio * f) & (f >= 1) & (k > drop)
    if not mask.any():
        mask = (k > drop) & (f >= 1)
    cols = np.arange(w)
    out = np.empty(len(shifts))
    batch = max(1, int(4e6 // (2 * na * w)))
    for b0 in range(0, len(shifts), batch):
        ds = shifts[b0:b0 + batch]
        idx = (cols[None, :] - ds[:, None]) % w  # (B, W): circular, keeps the noise statistics
        mirrored = flipped[:, idx].transpose(1, 0, 2)  # (B, na, W)
        full = np.concatenate([np.broadcast_to(s, mirrored.shape), mirrored], axis=1)
        spec = np.abs(np.fft.rfft2(full, axes=(1, 2)))
        out[b0:b0 + batch] = spec[:, mask].mean(axis=1)
    return out


def _parabola_vertex(x: np.ndarray, y: np.ndarray, i: int) -> float:
    """Sub-sample minimum from the samples ``i - 1, i, i + 1`` (equally spaced)."""
    if i <= 0 or i >= len(x) - 1:
        return float(x[i])
    y0, y1, y2 = y[i - 1], y[i], y[i + 1]
    den = y0 - 2 * y1 + y2
    if not den > 0:
        return float(x[i])
    h = x[i + 1] - x[i]
    return float(x[i] + np.clip(0.5 * h * (y0 - y2) / den, -h, h))


def _vo_search(s_half: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """(best centre on a half-pixel grid, parabolic sub-pixel estimate) from the Fourier metric.

    Coarse to fine: the whole range on a detector binned to about :data:`COARSE_WIDTH`
    columns, then +-1.5 binned pixels around the best candidate at each halving of the bin
    factor, down to full resolution.
    """
    w = s_half.shape[1]
    b = max(1, round(w / COARSE_WIDTH))
    lo_l, hi_l = lo, hi
    while True:
        sb = _bin_columns(s_half, b)
        wb = sb.shape[1]
        to_b = (lo_l - (b - 1) / 2) / b, (hi_l - (b - 1) / 2) / b
        d = np.arange(int(np.floor(2 * to_b[0] - (wb - 1))), int(np.ceil(2 * to_b[1] - (wb - 1))) + 1)
        m = _vo_metric(sb, d)
        i = int(np.argmin(m))
        cs = ((d + wb - 1) / 2) * b + (b - 1) / 2  # candidates in full-resolution columns
        if b == 1:
            return float(cs[i]), _parabola_vertex(cs, m, i)
        lo_l, hi_l = max(lo, cs[i] - 1.5 * b), min(hi, cs[i] + 1.5 * b)
        b //= 2


def _fourier_shift(s: np.ndarray, shift: float) -> np.ndarray:
    """``out[:, j] = s[:, j - shift]`` with a band-limited shift (edge-padded, no wrap-around)."""
    w = s.shape[1]
    pad = int(np.ceil(abs(shift))) + 8
    sp = np.pad(s, ((0, 0), (pad, pad)), mode="edge")
    n = sp.shape[1]
    phase = np.exp(-2j * np.pi * np.fft.rfftfreq(n) * shift)
    return np.fft.irfft(np.fft.rfft(sp, axis=1) * phase, n, axis=1)[:, pad:pad + w]


class _FbpMetric:
    """Image metrics of an ASTRA CPU FBP of the sinogram recentred on a candidate centre."""

    def __init__(self, sino: np.ndarray, angles: np.ndarray, roi: int, bins: int = 64,
                 filter: str = "hann", smooth: float = 1.0) -> None:
        import astra  # local: importing ASTRA is slow-ish and only needed here

        self.astra = astra
        na, w = sino.shape
        if na > ENTROPY_MAX_ANGLES:
            keep = np.linspace(0, na - 1, ENTROPY_MAX_ANGLES).round().astype(int)
            sino, angles = sino[keep], angles[keep]
        self.sino = np.asarray(sino, dtype=np.float64)
        self.w = w
        self.n = int(min(w, roi))
        self.bins = bins
        # a smooth filter: with ram-lak the noise dominates the histogram, and the blur of a
        # wrong centre, which averages noise away, lowers the entropy (a bias of ~0.5 px)
        self.filter = filter
        # ... and for the same reason the reconstruction is smoothed a little (Gaussian,
        # ``smooth`` pixels) before its histogram is taken: needed for very noisy scans
        self.smooth = smooth
        self.proj_geom = astra.create_proj_geom("parallel", 1.0, w, np.asarray(angles, dtype=np.float64))
        self.vol_geom = astra.create_vol_geom(self.n, self.n)
        yy, xx = np.mgrid[: self.n, : self.n] - (self.n - 1) / 2
        self.mask = yy ** 2 + xx ** 2 <= (self.n / 2) ** 2
        self.range: tuple[float, float] | None = None
        self.cache: dict[float, float] = {}

    def reconstruct(self, c: float) -> np.ndarray:
        astra = self.astra
        s = _fourier_shift(self.sino, (self.w - 1) / 2 - c).astype(np.float32)
        pid = astra.create_projector("linear", self.proj_geom, self.vol_geom)
        sid = astra.data2d.create("-sino", self.proj_geom, s)
        rid = astra.data2d.create("-vol", self.vol_geom, 0.0)
        try:
            cfg = astra.astra_dict("FBP")
            cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, FilterType=self.filter)
            aid = astra.algorithm.create(cfg)
            try:
                astra.algorithm.run(aid)
            finally:
                astra.algorithm.delete(aid)
            return astra.data2d.get(rid)
        finally:
            astra.data2d.delete([sid, rid])
            astra.projector.delete(pid)

    def __call__(self, c: float) -> float:
        """Histogram entropy of the reconstruction at centre ``c`` (within the inscribed disk)."""
        key = round(float(c), 6)
        if key in self.cache:
            return self.cache[key]
        r = self.reconstruct(c)
        if self.smooth:
            r = ndimage.gaussian_filter(r, self.smooth)
        r = r[self.mask]
        if self.range is None:
            lo, hi = np.percentile(r, [0.5, 99.5])
            pad = 0.5 * (hi - lo) if hi > lo else 1.0
            self.range = (float(lo - pad), float(hi + pad))
        hist, _ = np.histogram(r, bins=self.bins, range=self.range)
        p = hist[hist > 0] / max(hist.sum(), 1)
        e = float(-(p * np.log(p)).sum())
        self.cache[key] = e
        return e

    def negativity(self, c: float) -> float:
        """Fraction of the reconstruction's absolute mass that is negative (the arcs and
        overshoots of a wrong centre make it grow): robust far from the minimum."""
        r = self.reconstruct(c)[self.mask]
        total = float(np.abs(r).sum())
        return float(-r[r < 0].sum() / total) if total > 0 else 0.0


def _entropy_refine(metric: _FbpMetric, c0: float, lo: float, hi: float,
                    step: float = 0.5, max_extend: float = 4.0) -> float:
    """Minimise the metric around ``c0``: half-pixel samples, extended while the minimum is
    at an edge, then a parabola through the minimum and its neighbours."""
    xs = [c0 + step * k for k in range(-2, 3)]
    xs = [x for x in xs if lo <= x <= hi] or [min(max(c0, lo), hi)]
    ys = [metric(x) for x in xs]
    while True:
        i = int(np.argmin(ys))
        if i == 0 and xs[0] - step >= lo and c0 - xs[0] < max_extend:
            xs.insert(0, xs[0] - step)
            ys.insert(0, metric(xs[0]))
        elif i == len(xs) - 1 and xs[-1] + step <= hi and xs[-1] - c0 < max_extend:
            xs.append(xs[-1] + step)
            ys.append(metric(xs[-1]))
        else:
            break
    return _parabola_vertex(np.array(xs), np.array(ys), i)


def _negativity_coarse(sino: np.ndarray, angles: np.ndarray, lo: float, hi: float) -> float:
    """Coarse image-metric search on a binned detector over the whole range (negativity)."""
    w = sino.shape[1]
    b = max(1, round(w / COARSE_WIDTH))
    sb = _bin_columns(sino, b)
    wb = sb.shape[1]
    metric = _FbpMetric(sb, angles, roi=wb)
    lo_b, hi_b = (lo - (b - 1) / 2) / b, (hi - (b - 1) / 2) / b
    cands = np.arange(np.ceil(lo_b), np.floor(hi_b) + 1)
    if cands.size == 0:
        cands = np.array([(lo_b + hi_b) / 2])
    vals = np.array([metric.negativity(c) for c in cands])
    c_b = _parabola_vertex(cands, vals, int(np.argmin(vals)))
    return c_b * b + (b - 1) / 2


def _find_center(sinogram: np.ndarray, angles: np.ndarray, search: float | Sequence[float] = 0.25,
                 method: CenterMethod = "auto") -> tuple[float, dict[str, Any]]:
    s = np.asarray(sinogram, dtype=np.float64)
    if s.ndim == 3:
        s = s.mean(axis=0)
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if s.ndim != 2:
        raise ValueError(f"sinogram must be (angle, det), got shape {s.shape}")
    if a.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} projections in the sinogram but {a.shape[0]} angles")
    if not np.isfinite(s).all():
        raise ValueError("the sinogram holds NaN/inf values")
    if method == "entropy":
        method = "fbp"
    if method not in ("auto", "vo", "fbp"):
        raise ValueError(f"method must be 'auto', 'vo' or 'fbp', not {method!r}")
    na, w = s.shape
    mid = (w - 1) / 2
    lo, hi = center_search_range(w, search)
    info: dict[str, Any] = {"center_search_range": [round(lo, 3), round(hi, 3)]}
    if w < 8 or na < 4 or float(np.ptp(s)) <= 1e-12 * max(1.0, float(np.abs(s).max())):
        info["center_method"] = "middle (sinogram too small or without structure)"
        log.warning("centre of rotation: sinogram (%d x %d) too small or flat; using the middle %.2f", na, w, mid)
        return float(mid), info

    coarse = None
    steps = []
    if method in ("auto", "vo"):
        half = _half_turn(s, a, VO_MAX_ANGLES)
        if half is not None:
            coarse, sub = _vo_search(half, lo, hi)
            info["center_vo"] = round(sub, 3)
            steps.append("vo")
            if method == "vo":
                info["center_method"] = "vo"
                return float(np.clip(sub, lo, hi)), info
        elif method == "vo":
            raise ValueError("method='vo' needs a scan covering half a turn (pi) or more")
    # The image metrics see a wrong centre as arcs and doubled edges in a half-turn
    # reconstruction; over a full turn it only blurs (which can lower the entropy), so
    # they use the first half turn of the scan.
    s_fbp, a_fbp = _first_half_turn(s, a)
    coverage = _coverage(a)
    if coverage < 0.97 * np.pi:
        info["center_warning"] = f"the scan covers {np.degrees(coverage):.1f} deg < 180: centre unreliable"
        log.warning("centre of rotation: the scan covers only %.1f deg; the centre found may be wrong "
                    "(give it explicitly)", np.degrees(coverage))
    if coarse is None:
        coarse = _negativity_coarse(s_fbp, a_fbp, lo, hi)
        steps.append("fbp-negativity")
    info["center_coarse"] = round(float(coarse), 3)

    b = max(1, int(np.ceil(w / 1024)))  # very wide detectors: refine on a 2x/3x.. binned one
    sf = _bin_columns(s_fbp, b)
    to_b = lambda c: (c - (b - 1) / 2) / b
    metric = _FbpMetric(sf, a_fbp, roi=ENTROPY_ROI)
    c_b = _entropy_refine(metric, to_b(coarse), to_b(lo), to_b(hi))
    center = float(np.clip(c_b * b + (b - 1) / 2, lo, hi))
    steps.append("fbp-entropy")
    info["center_method"] = "+".join(steps)
    info["center_evaluations"] = len(metric.cache)
    if min(center - lo, hi - center) < 0.5:
        info["center_warning"] = "at the edge of the search range: widen center_search or give the centre"
        log.warning("centre of rotation %.2f is at the edge of the search range [%.1f, %.1f]", center, lo, hi)
    return center, info


def _coverage(angles: np.ndarray) -> float:
    """Angular range covered by the scan: span plus one (median) step."""
    a = np.sort(np.asarray(angles, dtype=np.float64))
    if a.size < 2:
        return 0.0
    return float(a[-1] - a[0] + np.median(np.diff(a)))


def _first_half_turn(sino: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The projections within half a turn of the first angle; all of them when the scan
    spans at most half a turn (a closing projection at exactly ``pi`` is kept)."""
    a = np.sort(np.asarray(angles, dtype=np.float64))
    if a.size < 2:
        return sino, angles
    step = float(np.median(np.diff(a)))
    if a[-1] - a[0] <= np.pi + 0.5 * step:
        return sino, angles
    keep = (angles - a[0]) < np.pi - 0.25 * step
    return sino[keep], angles[keep]


def find_center(
    sinogram: np.ndarray,
    angles: np.ndarray,
    *,
    search: float | Sequence[float] = 0.25,
    method: CenterMethod = "auto",
) -> float:
    """Find the centre of rotation of a parallel-beam sinogram.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(angle, det)`` line integrals (a ``(z, angle, det)`` stack is averaged over z).
    angles : numpy.ndarray
        ``(angle,)`` radians, any order and offset.
    search : float or (float, float)
        Candidates: ``middle +- search * det`` (default a quarter of the width either
        side), or an explicit ``(lo, hi)`` column range.
    method : {"auto", "vo", "fbp"}
        ``"auto"``: Fourier consistency (coarse) then FBP entropy (fine); ``"vo"``: Fourier
        consistency only; ``"fbp"`` (alias ``"entropy"``): FBP image metrics only
        (negativity coarse, entropy fine). See the module docstring.

    Returns
    -------
    float
        Centre of rotation as a 0-based detector column (the middle of the detector is
        ``(det - 1) / 2``).

    Raises
    ------
    ValueError
        For mismatched shapes, NaN/inf, or a search range outside the detector.
    """
    return _find_center(sinogram, angles, search, method)[0]


def find_center_pair(proj_0: np.ndarray, proj_180: np.ndarray, upsample: int = 20) -> float:
    """Centre of rotation from two projections half a turn apart (phase correlation).

    ``proj_180`` mirrored left-right is ``proj_0`` shifted by ``2 c - (W - 1)`` columns;
    the shift is measured by phase correlation with sub-pixel upsampling.

    Parameters
    ----------
    proj_0, proj_180 : numpy.ndarray
        ``(z, det)`` (or ``(det,)``) projections at ``theta`` and ``theta + pi``.
    upsample : int
        Sub-pixel precision ``1 / upsample``.

    Returns
    -------
    float
        0-based detector column of the rotation axis.
    """
    from skimage.registration import phase_cross_correlation

    a = np.atleast_2d(np.asarray(proj_0, dtype=np.float64))
    b = np.atleast_2d(np.asarray(proj_180, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"projections differ in shape: {a.shape} vs {b.shape}")
    shift, _, _ = phase_cross_correlation(a, b[:, ::-1], upsample_factor=upsample, normalization=None)
    # a[j] = b_flipped[j - shift] = b[W - 1 - j + shift] and b[k] = a[2 c - k]
    # -> a[j] = a[2 c - W + 1 + j - shift] -> c = (W - 1 + shift) / 2
    return float((a.shape[1] - 1 + shift[-1]) / 2)


# --------------------------------------------------------------------------------------
# the whole step
# --------------------------------------------------------------------------------------
def _center_rows(n_z: int, rows: int = CENTER_ROWS) -> slice:
    if n_z <= rows:
        return slice(0, n_z)
    start = (n_z - rows) // 2
    return slice(start, start + rows)


def _clamp_error(raw: RawScan, n_clamped: int, n_total: int, max_fraction: float, log_min: float) -> ScanError:
    """The error for too many transmission values at or below zero, naming the probable cause."""
    frac = n_clamped / float(max(n_total, 1))
    proj = raw.projections
    mean_p = float(proj[:: max(1, proj.shape[0] // 16)].mean(dtype=np.float64))
    if raw.flats is None:
        cause = (f"with no flat fields (the projections taken as transmission values, mean {mean_p:.4g}): "
                 "probably line integrals (-log) already, or raw counts with an offset")
        hint = ("read -log data as a sinogram, give the flat and dark fields with input.flats and input.darks, "
                f"or raise preprocess.max_clamped_fraction (now {max_fraction:g}) to accept the data "
                "with those values clamped")
    else:
        mean_f = float(raw.flats.mean(dtype=np.float64))
        mean_d = float(raw.darks.mean(dtype=np.float64)) if raw.darks is not None else 0.0
        if mean_p <= mean_d:
            why = "darks larger than the projections (a wrong dark assignment, or darks of another exposure)"
        else:
            why = "darks larger than the flats or the projections on part of the detector (a wrong dark/flat " \
                  "assignment)"
        cause = f"with mean flat {mean_f:.4g}, mean dark {mean_d:.4g} and mean projection {mean_p:.4g}: probably {why}"
        hint = ("check the flat and dark fields (input.flats, input.darks), or raise "
                f"preprocess.max_clamped_fraction (now {max_fraction:g}) to accept the data with those values clamped")
    return ScanError(raw.source, "projections",
                     f"at most {100 * max_fraction:.3g} % of the flat/dark-corrected transmission values at or "
                     f"below zero (under log_min {log_min:g}, clamped before the -log)",
                     f"{100 * frac:.3g} % ({n_clamped} of {n_total}) {cause}", hint=hint)


def _warn(info: dict[str, Any], message: str) -> None:
    log.warning("%s", message)
    info.setdefault("warnings", []).append(message)


def preprocess(
    raw: RawScan,
    center: float | None = None,
    log_min: float = 1e-6,
    center_search: float = 0.25,
    *,
    center_method: CenterMethod = "auto",
    outliers: float | None = None,
    rings: int | None = None,
    max_clamped_fraction: float = 0.01,
    sort_angles: bool = True,
) -> Preprocessed:
    """Flat/dark correction, -log and centre of rotation: a RawScan -> sinograms.

    Parameters
    ----------
    raw : RawScan
        From :func:`tomodenoise.io.read_scan`. When ``raw.preprocessed`` is True its
        projections are line integrals already: flat/dark correction and -log are skipped.
    center : float, optional
        Centre of rotation (0-based column); found with :func:`find_center` when None, on
        the mean sinogram of (up to :data:`CENTER_ROWS`) central rows.
    log_min : float
        Transmission values below this are clamped before the -log.
    center_search : float
        Search the centre within ``middle +- center_search * det``.
    center_method : {"auto", "vo", "fbp"}
        See :func:`find_center`.
    outliers : float, optional
        Replace outliers (zingers) differing from their 3x3 median by more than this
        relative amount (in the raw projections; in the sinogram for preprocessed input).
        Off by default.
    rings : int, optional
        Ring removal (:func:`remove_rings`) with this median width. Off by default.
    max_clamped_fraction : float
        Refuse the scan when more than this fraction of the transmission values is at or
        below zero (clamped to ``log_min``); the config's ``preprocess.max_clamped_fraction``.
    sort_angles : bool
        Sort the projections by angle when the angles are not monotonic (pencil-beam and
        continuous-rotation scans), with a warning; the acquisition index of each sorted
        projection goes to ``info["projection_order"]``.

    Returns
    -------
    Preprocessed
        ``info["warnings"]`` lists the warnings about the input (also logged).

    Raises
    ------
    ScanError
        Raw counts without flat fields (cannot be normalised); a detector narrower than
        :data:`~tomodenoise.io.checks.MIN_DET_WIDTH`; angles that are all the same; more
        than ``max_clamped_fraction`` of the values clamped before the -log.
    ValueError
        For a non-finite ``center`` or a ``max_clamped_fraction`` outside [0, 1].
    """
    if not 0 <= max_clamped_fraction <= 1:
        raise ValueError(f"max_clamped_fraction must be within [0, 1], got {max_clamped_fraction}")
    check_detector_width(raw.n_det, raw.source, "projections", raw.projections.shape)
    check_angle_span(raw.angles, raw.source, "angles")
    info: dict[str, Any] = {"preprocessed_input": bool(raw.preprocessed), "log_min": float(log_min), "warnings": []}
    proj = raw.projections
    n_total = int(proj.size)
    if raw.preprocessed:
        if outliers is not None:
            proj, n_out = remove_outliers(proj, outliers)
            info["n_outliers"] = n_out
        lines, n_clamped = np.asarray(proj, dtype=np.float32), 0
        info["flat_dark"] = "none (input already line integrals)"
    else:
        if raw.flats is None:
            if raw.darks is not None:
                raise ScanError(raw.source, "flats", "flat fields to go with the dark fields", "darks only",
                                hint="give the flat fields with input.flats")
            med = float(np.median(proj[:: max(1, proj.shape[0] // 16)]))
            if med > 2.0:
                raise ScanError(raw.source, "flats", "flat fields to normalise raw counts (or projections that are "
                                "transmission values around 0..1)", f"no flats and a median value of {med:.4g}",
                                hint="give the flat and dark fields with input.flats and input.darks (a file, "
                                     "folder or glob) when they are kept apart from the projections")
            info["flat_dark"] = "none (input already transmission)"
        else:
            info["flat_dark"] = "mean flat and dark" if raw.darks is not None else "mean flat, no darks"
            flat = raw.flats.mean(axis=0)
            dark = raw.darks.mean(axis=0) if raw.darks is not None else np.zeros_like(flat)
            n_bad = int(np.count_nonzero(~(flat > dark)))
            info["n_bad_flat_pixels"] = n_bad
            info["bad_flat_fraction"] = n_bad / float(flat.size)
            if info["bad_flat_fraction"] > BAD_FLAT_FRACTION:  # the readers refuse these; RawScans built by hand
                raise ScanError(raw.source, "flats", f"flat fields brighter than the darks over at least "
                                f"{100 * (1 - BAD_FLAT_FRACTION):.0f} % of the detector",
                                f"flat <= dark on {100 * info['bad_flat_fraction']:.1f} % of the pixels (mean flat "
                                f"{float(flat.mean()):.4g}, mean dark {float(dark.mean()):.4g})",
                                hint="check that flats and darks are not swapped (input.flats, input.darks)")
        info["n_flats"] = 0 if raw.flats is None else int(raw.flats.shape[0])
        info["n_darks"] = 0 if raw.darks is None else int(raw.darks.shape[0])
        if outliers is not None:
            proj, n_out = remove_outliers(proj, outliers)
            info["n_outliers"] = n_out
        trans = flat_dark_correct(proj, raw.flats, raw.darks)
        lines, n_clamped = minus_log(trans, log_min)
        del trans
    info["n_clamped"] = int(n_clamped)
    info["clamped_fraction"] = n_clamped / float(max(n_total, 1))
    info["max_clamped_fraction"] = float(max_clamped_fraction)
    if info["clamped_fraction"] > max_clamped_fraction:
        raise _clamp_error(raw, int(n_clamped), n_total, max_clamped_fraction, log_min)
    angles = np.asarray(raw.angles, dtype=np.float64)
    order = angle_order(angles) if sort_angles else None
    if order is None:
        sino = np.ascontiguousarray(np.transpose(lines, (1, 0, 2)), dtype=np.float32)
    else:
        first = int(np.flatnonzero(np.diff(angles) < 0)[0]) + 1  # the first one below its predecessor
        sino = np.take(np.transpose(lines, (1, 0, 2)), order, axis=1).astype(np.float32, copy=False)
        angles = angles[order]
        info["angles_sorted"] = True
        info["projection_order"] = [int(i) for i in order]
        _warn(info, f"{raw.source}: the {order.size} projection angles are not in order (projection {first} at "
                    f"{np.rad2deg(raw.angles[first]):.4g} deg follows {np.rad2deg(raw.angles[first - 1]):.4g} deg): "
                    "the projections are sorted by angle, and their acquisition order is kept in "
                    "info['projection_order'] (the store's preprocess attributes)")
    del lines
    if rings is not None:
        sino = remove_rings(sino, int(rings))
        info["rings"] = f"column-profile median {int(rings)}"

    if center is None:
        rows = _center_rows(sino.shape[0])
        c, cinfo = _find_center(sino[rows].mean(axis=0), angles, center_search, center_method)
        info.update(cinfo)
        info["center_rows"] = [int(rows.start), int(rows.stop)]
        if "center_warning" in cinfo:
            info["warnings"].append(f"{raw.source}: centre of rotation {c:.2f}: {cinfo['center_warning']}")
    else:
        c = float(center)
        if not np.isfinite(c):
            raise ValueError(f"center must be finite, got {center}")
        if not 0 <= c <= sino.shape[2] - 1:
            _warn(info, f"{raw.source}: the centre of rotation {c:.2f} given lies outside the detector "
                        f"(0..{sino.shape[2] - 1})")
        info["center_method"] = "given"
    info["center"] = float(c)
    info["shape"] = [int(v) for v in sino.shape]
    return Preprocessed(sinogram=sino, angles=angles, center=float(c), n_clamped=int(n_clamped), info=info)
