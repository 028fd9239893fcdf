"""Classical baselines: FBP, SIRT, and Gaussian / BM3D post-filters of the FBP.

SIRT's iteration count, the Gaussian's width and BM3D's noise level are chosen on the
held-out slice (:func:`tomodenoise.methods.tuning.choose_on_slice`: PSNR against the clean
reference when there is one, uMSE from interlaced splits otherwise) unless given; what was
chosen, on which slice and by which score, is in ``MethodResult.params``. TV-regularised
reconstruction is :mod:`tomodenoise.methods.tv`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..quality.gaussian import gaussian_slices
from ..recon import sirt
from ..recon.checks import normalise_filter
from .base import Context, MethodConfig, MethodResult, Scan, Timer
from .tuning import choose_on_slice

__all__ = ["BM3D", "FBP", "SIRT", "Gaussian", "bm3d_filter"]


def _tuned_run(name: str, label: str, fixed: float | None, run_with: Callable[[Any, Scan], np.ndarray],
               grid: list[float], scan: Scan, ctx: Context, **tune: Any) -> MethodResult:
    """Run with ``fixed``, or with the value chosen on the held-out slice; params say which."""
    with Timer() as t:
        if fixed is None:
            tuned = choose_on_slice(run_with, grid, scan, ctx, **tune)
            value, params = tuned.value, tuned.params(name)
            ctx.log(f"{label}: {name}={value:.4g} ({tuned.by} on slice {tuned.slice})")
        else:
            value, params = fixed, {name: fixed}
        vol = np.asarray(run_with(value, scan), dtype=np.float32)
    return MethodResult(volume=vol, params=params, info={"seconds": t.seconds})


class FBP(MethodConfig):
    """Filtered back-projection of all projections (the reference point of every table)."""

    method: Literal["fbp"] = "fbp"
    filter: str = Field("ram-lak", description="ASTRA FBP filter (ram-lak, shepp-logan, hann, ...)")

    @field_validator("filter")
    @classmethod
    def _known_filter(cls, v: str) -> str:
        return normalise_filter(v)

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """The FBP of ``scan`` with ``filter``."""
        return MethodResult(volume=scan.fbp(filter=self.filter), params={"filter": self.filter})


class SIRT(MethodConfig):
    """ASTRA SIRT from zero, the number of iterations chosen on the held-out slice."""

    method: Literal["sirt"] = "sirt"
    iterations: int | None = Field(None, ge=1, description="SIRT iterations; tuned on the held-out slice "
                                                           "when empty")
    grid: list[int] = Field([10, 25, 50, 100, 200, 400], min_length=2,
                            description="Iteration counts tried when tuning (refined around the best)")
    max_iterations: int = Field(2000, ge=1, description="Upper bound while tuning")
    min_constraint: float | None = Field(None, description="Lower bound on the values (e.g. 0)")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """SIRT of every slice; ``params['iterations']`` and how it was chosen.

        While tuning, each count continues from the largest smaller one already run on the
        same scan (SIRT's iterate is all its state), so a grid costs its largest count.
        """
        done: list[tuple[Scan, dict[int, np.ndarray]]] = []  # per scan object: iterations -> result

        def run_with(its: int, s: Scan) -> np.ndarray:
            its = int(its)
            cache = next((c for obj, c in done if obj is s), None)
            if cache is None:
                cache = {}
                done.append((s, cache))
            below = max((m for m in cache if m <= its), default=0)
            if below == its:
                return cache[its]
            vol = sirt(s.sino, s.angles, center=s.center, iterations=its - below,
                       min_constraint=self.min_constraint, initial=cache.get(below))
            cache[its] = vol
            return vol

        res = _tuned_run("iterations", self.label, self.iterations, run_with, [float(g) for g in self.grid],
                         scan, ctx, integer=True, bounds=(1, self.max_iterations))
        res.params["min_constraint"] = self.min_constraint
        return res


class Gaussian(MethodConfig):
    """Gaussian filter of each FBP slice (:func:`tomodenoise.quality.gaussian.gaussian_slices`),
    ``sigma`` (pixels) chosen on the held-out slice."""

    method: Literal["gaussian"] = "gaussian"
    sigma: float | None = Field(None, gt=0, description="Filter width in pixels; tuned when empty")
    grid: list[float] = Field([0.3, 0.6, 1.0, 1.6, 2.5, 4.0], min_length=2, description="Widths tried when tuning")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """The filtered FBP; ``params['sigma']`` and how it was chosen."""
        def run_with(sigma: float, s: Scan) -> np.ndarray:
            return gaussian_slices(s.fbp(), float(sigma))

        return _tuned_run("sigma", self.label, self.sigma, run_with, list(self.grid), scan, ctx,
                          bounds=(0.05, 50.0))


def bm3d_filter(volume: np.ndarray, sigma_psd: float) -> np.ndarray:
    """BM3D (the ``bm3d`` package) of every slice of ``volume`` with white-noise level ``sigma_psd``."""
    import bm3d

    return np.stack([np.asarray(bm3d.bm3d(s.astype(np.float64), sigma_psd=float(sigma_psd)), dtype=np.float32)
                     for s in volume])


class BM3D(MethodConfig):
    """BM3D of each FBP slice, ``sigma_psd`` chosen on the held-out slice around skimage's estimate."""

    method: Literal["bm3d"] = "bm3d"
    sigma_psd: float | None = Field(None, gt=0, description="Noise standard deviation given to BM3D; tuned "
                                                            "when empty")
    factors: list[float] = Field([0.5, 1.0, 2.0], min_length=2,
                                 description="Multiples of the estimated noise level tried when tuning")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """The filtered FBP; ``params['sigma_psd']``, the estimate and how it was chosen."""
        from skimage.restoration import estimate_sigma

        s = max(int(ctx.tune_slice), 0)
        estimate = float(estimate_sigma(scan.fbp()[s].astype(np.float64)))
        estimate = max(estimate, 1e-6 * float(np.abs(scan.fbp()).max() or 1.0))

        n_full = scan.angles.size

        def run_with(sigma: float, sc: Scan) -> np.ndarray:
            # sigma is the full scan's noise level: an FBP of fewer projections (the unsupervised
            # tuning's input) is noisier by sqrt(n_full / n)
            return bm3d_filter(sc.fbp(), sigma * float(np.sqrt(n_full / sc.angles.size)))

        res = _tuned_run("sigma_psd", self.label, self.sigma_psd, run_with, [estimate * f for f in self.factors],
                         scan, ctx, refine=2)
        res.params["sigma_estimate"] = estimate
        return res
