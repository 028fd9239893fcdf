"""Choosing a classical method's one parameter on the held-out slice.

The comparison holds one slice out of the reported metrics (``ctx.tune_slice``); a method with
one free parameter (SIRT iterations, TV weight, filter width, BM3D noise level) is run on that
slice only for every value of a grid (refined around the best value and extended at its edges,
:func:`oracle_search`), and the best value is then used on the
whole scan. The score is

* ``psnr``: PSNR against ``scan.clean`` when the scan has a clean reference;
* ``umse`` otherwise: the method runs on the angles of ``k - 3`` of ``k`` interlaced splits and
  its output is compared with the other three splits' FBPs by
  :func:`tomodenoise.metrics.umse` (an estimate of the MSE up to the splits' own streaks,
  lower is better; see its caveats).

Both are taken inside the field of view (:func:`fov_mask`, the disk every projection sees)
by default: outside it the reference (a clean FBP) holds FBP's own extrapolation of the
data, which iterative methods (SIRT, TV) do not reproduce, so a whole-square score would
penalise them for pixels no projection constrains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..metrics import psnr, umse
from ..splits import split_indices
from .base import Context, Scan

__all__ = ["Tuned", "choose_on_slice", "fov_mask", "oracle_search"]

#: ``run_with(value, scan) -> (z, y, x)`` volume of the method with its parameter at ``value``
RunWith = Callable[[float, Scan], np.ndarray]


@dataclass
class Tuned:
    """The chosen value and how it was found.

    Attributes
    ----------
    value : float or int
        The chosen parameter.
    score : float
        Its score (PSNR in dB, or uMSE).
    by : {"psnr", "umse"}
        The criterion (PSNR is maximised, uMSE minimised).
    slice : int
        The slice of the scan it was tuned on.
    tried : list of (value, score)
        Every value evaluated, sorted by value.
    note : str, optional
        E.g. that a one-slice scan was tuned on its only slice (nothing held out).
    region : {"fov", "all"}
        Where the score was taken.
    """

    value: float
    score: float
    by: str
    slice: int
    tried: list[tuple[float, float]] = field(default_factory=list)
    note: str | None = None
    region: str = "fov"

    def params(self, name: str) -> dict[str, Any]:
        """``{name: value, "tuned_on_slice", "tuned_by", "tuned_score", "tried"[, "tuning_note"]}``."""
        out: dict[str, Any] = {name: self.value, "tuned_on_slice": self.slice, "tuned_by": self.by,
                               "tuned_region": self.region, "tuned_score": self.score,
                               "tried": [[v, s] for v, s in self.tried]}
        if self.note:
            out["tuning_note"] = self.note
        return out


def oracle_search(evaluate: Callable[[float], float], grid: Sequence[float], refine: int = 4,
                  log: bool = True) -> tuple[float, float, list[tuple[float, float]]]:
    """Maximise ``evaluate`` over ``grid``, then refine between the best point's neighbours.

    A maximum at an edge of the grid extends the grid outwards (up to 4 times); ``log``
    extends and refines geometrically, else linearly. Each point is evaluated once.
    Returns ``(best_param, best_value, all (param, value) pairs sorted by param)``.
    """
    tried: dict[float, float] = {}

    def ev(p: float) -> float:
        p = float(p)
        if p not in tried:
            tried[p] = float(evaluate(p))
        return tried[p]

    for g in sorted(float(g) for g in grid):
        ev(g)
    for _ in range(4):  # extend at the edges
        best = max(tried, key=tried.get)
        pts = sorted(tried)
        if best == pts[-1]:
            ev(pts[-1] * (pts[-1] / pts[-2]) if log else 2 * pts[-1] - pts[-2])
        elif best == pts[0]:
            ev(pts[0] / (pts[1] / pts[0]) if log else max(1e-6, 2 * pts[0] - pts[1]))
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


def fov_mask(n: int) -> np.ndarray:
    """``(n, n)`` bool: pixel centres within ``n / 2 - 1`` of the rotation axis (the grid middle)."""
    yy, xx = np.mgrid[:n, :n]
    return np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) < max(n / 2 - 1, 1)


def _unsupervised_score(run_with: RunWith, one: Scan, k: int, m: np.ndarray) -> Callable[[float], float]:
    n = one.angles.size
    if n < k:
        raise ValueError(f"unsupervised tuning needs at least {k} projections (k={k} splits), got {n}")
    groups = split_indices(n, k)
    inputs = np.sort(np.concatenate(groups[: k - 3]))
    a, b, c = (one.fbp(g)[:, m] for g in groups[k - 3:])
    sub = one.subset(inputs)
    return lambda v: -umse(run_with(v, sub)[:, m], a, b, c)


def choose_on_slice(
    run_with: RunWith,
    grid: Sequence[float],
    scan: Scan,
    ctx: Context,
    *,
    log: bool = True,
    integer: bool = False,
    bounds: tuple[float, float] | None = None,
    refine: int = 3,
    by: Literal["auto", "psnr", "umse"] = "auto",
    splits: int = 6,
    region: Literal["fov", "all"] = "fov",
) -> Tuned:
    """Pick the value of ``grid`` (refined) whose method output is best on ``ctx.tune_slice``.

    Parameters
    ----------
    run_with : callable
        ``run_with(value, scan) -> (z, y, x)``: the method with its parameter at ``value`` on a
        scan (here always one slice, possibly fewer angles).
    grid : sequence of float
        Starting values (at least two).
    scan : Scan
        The whole scan; only slice ``ctx.tune_slice`` is used (slice 0 when it is ``-1``, a
        one-slice scan: then nothing is held out and the note says so).
    ctx : Context
        For ``tune_slice``.
    log : bool
        Refine and extend the grid geometrically (True) or linearly.
    integer : bool
        Round the values (iteration counts); each integer is evaluated once.
    bounds : (low, high), optional
        Values are clipped into this range.
    refine : int
        Extra values tried between the best one's neighbours.
    by : {"auto", "psnr", "umse"}
        ``auto``: PSNR against ``scan.clean`` when present, uMSE from splits otherwise.
    splits : int
        Interlaced splits for the uMSE score (``splits - 3`` are the method's input).
    region : {"fov", "all"}
        Score inside the field of view (:func:`fov_mask`, default) or over the whole square.

    Returns
    -------
    Tuned
        The value, its score, the criterion, the slice and every ``(value, score)`` tried.
    """
    if len(grid) < 2:
        raise ValueError(f"the tuning grid needs at least two values, got {list(grid)}")
    z = scan.shape[0]
    s = int(ctx.tune_slice)
    note = None
    if s == -1:
        s, note = 0, "one-slice scan: tuned on its only slice (not held out)"
    if not 0 <= s < z:
        raise ValueError(f"tune_slice {ctx.tune_slice} is outside the scan's {z} slices")
    one = scan.slices([s])
    n = one.shape[-1]
    m = fov_mask(n) if region == "fov" else np.ones((n, n), dtype=bool)
    if by == "auto":
        by = "psnr" if one.clean is not None else "umse"
    if by == "psnr":
        if one.clean is None:
            raise ValueError("tuning by PSNR needs scan.clean")
        ref = one.clean[:, m]
        score = lambda v: psnr(ref, run_with(v, one)[:, m])  # noqa: E731
    elif by == "umse":
        score = _unsupervised_score(run_with, one, splits, m)
    else:
        raise ValueError(f"by must be 'auto', 'psnr' or 'umse', got {by!r}")

    cache: dict[float, float] = {}

    def snap(v: float) -> float:
        if bounds is not None:
            v = min(max(v, bounds[0]), bounds[1])
        return float(max(1, round(v))) if integer else float(v)

    def evaluate(v: float) -> float:
        key = snap(v)
        if key not in cache:
            cache[key] = float(score(int(key) if integer else key))
        return cache[key]

    oracle_search(evaluate, [snap(g) for g in grid], refine=refine, log=log)
    best = max(cache, key=cache.get)
    sign = 1.0 if by == "psnr" else -1.0
    tried = [(int(v) if integer else v, sign * cache[v]) for v in sorted(cache)]
    return Tuned(value=int(best) if integer else best, score=sign * cache[best], by=by, slice=s,
                 tried=tried, note=note, region=region)
