"""Total-variation regularised reconstruction by the Chambolle-Pock primal-dual algorithm.

Each slice solves

.. math:: \\min_{x} \\tfrac12 \\|A x - b\\|_2^2 + \\lambda \\, \\mathrm{TV}(x) \\quad (x \\ge 0 \\text{ optionally})

with ``A`` the ASTRA parallel-beam projector (:class:`ParallelOperator`, the same geometry,
centring and scale as :func:`tomodenoise.recon.fbp`) and ``TV`` the isotropic total variation
(forward differences, Neumann boundary). The saddle-point form uses ``K = [A; mu grad]`` with
``mu = ||A|| / sqrt(8)`` so that both blocks have about the same norm, ``||A||`` estimated by
power iteration, and the steps ``tau = sigma = 0.99 / ||K||`` (Chambolle & Pock, "A first-order
primal-dual algorithm for convex problems with applications to imaging", JMIV 2011, Alg. 1 with
theta = 1). The iterates start from the FBP. ``lambda`` (``weight``) is chosen on the held-out
slice (:func:`tomodenoise.methods.tuning.choose_on_slice`) unless given.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..recon.centre import centre_plan, centre_slice
from ..recon.gpu import astra_module, use_cuda
from .base import Context, MethodConfig, MethodResult, Scan, Timer
from .tuning import choose_on_slice

__all__ = ["ParallelOperator", "TVRecon", "tv_reconstruct"]


class ParallelOperator:
    """ASTRA forward projection ``A`` and back-projection ``A^T`` of one ``n x n`` slice.

    Parameters
    ----------
    angles : numpy.ndarray
        ``(angle,)`` radians.
    width : int
        Detector columns of the sinograms (before re-centring on ``center``).
    center : float, optional
        Rotation-axis column (default the detector middle); sinograms are padded/shifted by
        :meth:`centre` as :func:`tomodenoise.recon.fbp` does.
    n_pixels : int, optional
        Side of the reconstruction grid (default ``width``).
    use_gpu : {"auto", "yes", "no"} or bool
        ``FP_CUDA``/``BP_CUDA`` when allowed and available, else the CPU ``FP``/``BP`` with the
        ``linear`` projector (an exact transpose pair).
    """

    def __init__(self, angles: np.ndarray, width: int, *, center: float | None = None,
                 n_pixels: int | None = None, use_gpu: str | bool = "auto") -> None:
        self._ids: list[tuple[str, int]] = []
        astra = self._astra = astra_module()
        self.angles = np.asarray(angles, dtype=np.float64)
        self.plan = centre_plan(int(width), center)
        self.n = int(width if n_pixels is None else n_pixels)
        self.n_det = int(width) + self.plan[0] + self.plan[1]
        self._norm: float | None = None
        cuda = use_cuda(use_gpu)
        vol_geom = astra.create_vol_geom(self.n, self.n)
        proj_geom = astra.create_proj_geom("parallel", 1.0, self.n_det, self.angles)
        try:
            self._vol = self._add("data2d", astra.data2d.create("-vol", vol_geom, 0.0))
            self._sino = self._add("data2d", astra.data2d.create("-sino", proj_geom, 0.0))
            proj = None if cuda else self._add("projector", astra.create_projector("linear", proj_geom, vol_geom))
            algs = []
            for name in ("FP", "BP"):
                cfg = astra.astra_dict(name + ("_CUDA" if cuda else ""))
                cfg["ProjectionDataId"] = self._sino
                cfg["VolumeDataId" if name == "FP" else "ReconstructionDataId"] = self._vol
                if proj is not None:
                    cfg["ProjectorId"] = proj
                algs.append(self._add("algorithm", astra.algorithm.create(cfg)))
            self._fp, self._bp = algs
        except BaseException:
            self.close()
            raise

    def _add(self, kind: str, obj_id: int) -> int:
        self._ids.append((kind, obj_id))
        return obj_id

    def centre(self, sino2d: np.ndarray) -> np.ndarray:
        """A measured ``(angle, width)`` slice re-centred to this operator's detector."""
        return centre_slice(np.asarray(sino2d, dtype=np.float32), self.plan)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``A x``: ``(n, n)`` -> ``(angle, n_det)`` float32 line integrals."""
        self._astra.data2d.store(self._vol, np.ascontiguousarray(x, dtype=np.float32))
        self._astra.data2d.store(self._sino, 0.0)
        self._astra.algorithm.run(self._fp)
        return self._astra.data2d.get(self._sino)

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``A^T y``: ``(angle, n_det)`` -> ``(n, n)`` float32 back-projection."""
        self._astra.data2d.store(self._sino, np.ascontiguousarray(y, dtype=np.float32))
        self._astra.data2d.store(self._vol, 0.0)
        self._astra.algorithm.run(self._bp)
        return self._astra.data2d.get(self._vol)

    def norm(self, iterations: int = 30, seed: int = 0) -> float:
        """``||A||`` by power iteration on ``A^T A`` (cached; 2% safety margin added)."""
        if self._norm is None:
            x = np.random.default_rng(seed).random((self.n, self.n)).astype(np.float32)
            s = 0.0
            for _ in range(iterations):
                x = self.adjoint(self.forward(x))
                s = float(np.linalg.norm(x))
                x /= max(s, 1e-30)
            self._norm = 1.02 * float(np.sqrt(s))
        return self._norm

    def close(self) -> None:
        """Free the ASTRA objects (idempotent)."""
        astra = self._astra
        while self._ids:
            kind, obj_id = self._ids.pop()
            getattr(astra, kind).delete(obj_id)

    def __enter__(self) -> ParallelOperator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _grad(x: np.ndarray) -> np.ndarray:
    g = np.zeros((2,) + x.shape, dtype=x.dtype)
    g[0, :-1] = x[1:] - x[:-1]
    g[1, :, :-1] = x[:, 1:] - x[:, :-1]
    return g


def _grad_adjoint(q: np.ndarray) -> np.ndarray:
    """``grad^T q`` (minus the divergence)."""
    out = np.zeros(q.shape[1:], dtype=q.dtype)
    out[:-1] -= q[0, :-1]
    out[1:] += q[0, :-1]
    out[:, :-1] -= q[1, :, :-1]
    out[:, 1:] += q[1, :, :-1]
    return out


def tv_slice(op: ParallelOperator, b: np.ndarray, weight: float, iterations: int, x0: np.ndarray,
             nonneg: bool = True) -> np.ndarray:
    """Chambolle-Pock on one re-centred slice ``b`` ``(angle, n_det)`` from ``x0`` ``(n, n)``."""
    norm_a = op.norm()
    mu = norm_a / np.sqrt(8.0)
    step = 0.99 / (np.sqrt(2.0) * norm_a)  # ||K||^2 <= ||A||^2 + mu^2 ||grad||^2 = 2 ||A||^2
    radius = weight / mu
    x = np.maximum(x0, 0) if nonneg else np.array(x0, dtype=np.float32)
    x = x.astype(np.float32)
    x_bar = x.copy()
    p = np.zeros_like(b, dtype=np.float32)
    q = np.zeros((2,) + x.shape, dtype=np.float32)
    for _ in range(int(iterations)):
        p = (p + step * (op.forward(x_bar) - b)) / (1.0 + step)
        q += step * mu * _grad(x_bar)
        q /= np.maximum(1.0, np.sqrt(q[0] ** 2 + q[1] ** 2) / max(radius, 1e-30))
        x_new = x - step * (op.adjoint(p) + mu * _grad_adjoint(q))
        if nonneg:
            np.maximum(x_new, 0, out=x_new)
        x_bar = 2 * x_new - x
        x = x_new
    return x


def tv_reconstruct(scan: Scan, weight: float, iterations: int = 100, nonneg: bool = True,
                   use_gpu: str | bool = "auto") -> np.ndarray:
    """TV reconstruction ``(z, y, x)`` float32 of every slice of ``scan`` (see the module docstring)."""
    fbp = scan.fbp()
    out = np.empty(scan.shape, dtype=np.float32)
    with ParallelOperator(scan.angles, scan.sino.shape[2], center=scan.center, use_gpu=use_gpu) as op:
        for iz in range(scan.shape[0]):
            out[iz] = tv_slice(op, op.centre(scan.sino[iz]), weight, iterations, fbp[iz], nonneg)
    return out


class TVRecon(MethodConfig):
    """TV-regularised reconstruction (Chambolle-Pock), ``weight`` tuned on the held-out slice."""

    method: Literal["tv"] = "tv"
    weight: float | None = Field(None, gt=0, description="TV weight lambda; tuned on the held-out slice when empty")
    iterations: int = Field(100, ge=1, description="Primal-dual iterations per slice (started from the FBP)")
    nonneg: bool = Field(True, description="Constrain the reconstruction to x >= 0")
    grid: list[float] | None = Field(None, description="Weights tried when tuning (default: log grid scaled "
                                                      "to the data)")

    def default_grid(self, scan: Scan) -> list[float]:
        """Log grid around ``n_angles * std(FBP) / 2`` (the data term grows with the number of angles)."""
        ref = float(np.std(scan.fbp())) * scan.angles.size * 0.5
        return [ref * f for f in (0.1, 0.3, 1.0, 3.0, 10.0)]

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """Reconstruct ``scan`` slice by slice; the weight and how it was chosen go in ``params``."""
        n_full = scan.angles.size

        def run_with(w: float, s: Scan) -> np.ndarray:
            # w is the full scan's weight: the data term sums over projections, so a scan of
            # fewer (the unsupervised tuning's input) takes the weight in proportion
            return tv_reconstruct(s, w * s.angles.size / n_full, self.iterations, self.nonneg)

        params: dict = {"iterations": self.iterations, "nonneg": self.nonneg}
        with Timer() as t:
            if self.weight is None:
                tuned = choose_on_slice(run_with, self.grid or self.default_grid(scan), scan, ctx, log=True)
                weight = float(tuned.value)
                params.update(tuned.params("weight"))
                ctx.log(f"tv: weight={weight:.4g} ({tuned.by} on slice {tuned.slice})")
            else:
                weight = float(self.weight)
                params["weight"] = weight
            vol = run_with(weight, scan)
        return MethodResult(volume=vol, params=params, info={"seconds": t.seconds})
