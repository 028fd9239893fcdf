"""Centre of rotation: find the rotation axis of a parallel-beam scan.

:func:`find_center` searches a sinogram for the centre (Fourier data consistency, Vo et
al. 2014, refined by minimising the histogram entropy of an FBP reconstruction, Donath et
al. 2006; see :mod:`tomodenoise.preprocess`), :func:`find_center_info` does the same and
also returns the record of the search, and :func:`centre_scores` gives the fine score at
given centres (the preview's curve).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

__all__ = [
    "COARSE_WIDTH",
    "ENTROPY_MAX_ANGLES",
    "ENTROPY_ROI",
    "VO_MAX_ANGLES",
    "CenterMethod",
    "center_search_range",
    "centre_scores",
    "find_center",
    "find_center_info",
]

log = logging.getLogger("tomodenoise.preprocess")

CenterMethod = Literal["auto", "vo", "fbp", "entropy"]

#: Detector width (pixels) of the binned sinogram of the coarse searches.
COARSE_WIDTH = 128
#: Largest region of interest (pixels) reconstructed for the entropy metric.
ENTROPY_ROI = 320
#: Most angles used by the entropy metric (evenly subsampled beyond).
ENTROPY_MAX_ANGLES = 720
#: Most angles of the resampled half-turn sinogram of the Fourier metric.
VO_MAX_ANGLES = 720


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


def find_center_info(sinogram: np.ndarray, angles: np.ndarray, search: float | Sequence[float] = 0.25,
                     method: CenterMethod = "auto") -> tuple[float, dict[str, Any]]:
    """:func:`find_center`, also returning the record of the search.

    Parameters
    ----------
    sinogram, angles, search, method
        As for :func:`find_center`.

    Returns
    -------
    center : float
        Centre of rotation as a 0-based detector column.
    info : dict
        JSON-serialisable record: ``center_search_range``, ``center_method`` (the steps
        run, joined by ``+``), ``center_coarse``, ``center_vo``, ``center_evaluations``
        and ``center_warning`` when the centre is unreliable (each where it applies).

    Raises
    ------
    ValueError
        As for :func:`find_center`.
    """
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
    return find_center_info(sinogram, angles, search, method)[0]


def centre_scores(sinogram: np.ndarray, angles: np.ndarray, centres: np.ndarray,
                  first: float | None = None) -> np.ndarray:
    """The centre finder's fine score (FBP histogram entropy) at each of ``centres``.

    The same metric, half turn and detector binning as the fine step of
    :func:`find_center_info`; ``first`` (default the middle
    candidate) is evaluated first: it fixes the histogram's range, as the finder's first
    candidate does.
    """
    s = np.asarray(sinogram, dtype=np.float64)
    a = np.asarray(angles, dtype=np.float64)
    s, a = _first_half_turn(s, a)
    w = s.shape[1]
    b = max(1, int(np.ceil(w / 1024)))
    metric = _FbpMetric(_bin_columns(s, b), a, roi=ENTROPY_ROI)
    to_b = lambda c: (float(c) - (b - 1) / 2) / b  # noqa: E731
    centres = np.asarray(centres, dtype=np.float64)
    metric(to_b(centres[len(centres) // 2] if first is None else first))
    return np.array([metric(to_b(c)) for c in centres])
