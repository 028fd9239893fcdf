"""One ASTRA 2D algorithm, set up once and run on many slices.

Creating the geometry, the projector, the two data objects and the algorithm costs about
as much as reconstructing a small slice, so a caller that reconstructs many slices with the
same angles (every z-slab of one split of a scan) keeps one :class:`SliceReconstructor`
and feeds it the slices; all ASTRA objects are freed by :meth:`~SliceReconstructor.close`
(or at the end of a ``with`` block).
"""

from __future__ import annotations

import numpy as np

from .centre import centre_plan, centre_slice
from .gpu import astra_module

__all__ = ["SliceReconstructor"]


class SliceReconstructor:
    """An ASTRA 2D reconstruction (``FBP``/``SIRT``, ``_CUDA`` when ``cuda``) for fixed
    angles, detector width, centre and ``n_pixels x n_pixels`` grid.

    Parameters
    ----------
    angles : numpy.ndarray
        ``(angle,)`` radians, the projections :meth:`reconstruct` will be given.
    width : int
        Detector columns of the sinograms (before re-centring).
    center, n_pixels, algorithm, cuda, options, iterations, projector
        As the module functions :func:`tomodenoise.recon.fbp` / :func:`~tomodenoise.recon.sirt`
        resolve them (``algorithm`` without the ``_CUDA`` suffix; ``options`` ASTRA's
        ``option`` dictionary; ``projector`` the CPU projector, unused on the GPU).
    """

    def __init__(self, angles: np.ndarray, width: int, *, center: float | None, n_pixels: int, algorithm: str,
                 cuda: bool, options: dict | None = None, iterations: int = 1, projector: str = "linear") -> None:
        self._proj_id = self._sino_id = self._rec_id = self._alg_id = None
        astra = self._astra = astra_module()
        self.angles = np.asarray(angles, dtype=np.float64)
        self.width = int(width)
        self.n_pixels = int(n_pixels)
        self.iterations = int(iterations)
        self.plan = centre_plan(self.width, center)
        padded = self.width + self.plan[0] + self.plan[1]
        vol_geom = astra.create_vol_geom(self.n_pixels, self.n_pixels)
        proj_geom = astra.create_proj_geom("parallel", 1.0, padded, self.angles)
        try:
            self._sino_id = astra.data2d.create("-sino", proj_geom, 0.0)
            self._rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
            cfg = astra.astra_dict(algorithm + ("_CUDA" if cuda else ""))
            cfg["ProjectionDataId"] = self._sino_id
            cfg["ReconstructionDataId"] = self._rec_id
            if not cuda:
                self._proj_id = astra.create_projector(projector, proj_geom, vol_geom)
                cfg["ProjectorId"] = self._proj_id
            if options:
                cfg["option"] = dict(options)
            self._alg_id = astra.algorithm.create(cfg)
        except BaseException:
            self.close()
            raise

    def reconstruct(self, sino3: np.ndarray, rows: np.ndarray | None = None,
                    out: np.ndarray | None = None, initial: np.ndarray | None = None) -> np.ndarray:
        """Reconstruct every slice of ``sino3`` ``(z, angle, det)``; ``(z, y, x)`` float32.

        ``rows``: the projections (indices along ``angle``) that make up this
        reconstructor's angles, e.g. one split of a whole sinogram slab: only one slice's
        rows are copied at a time. ``out``: a ``(z, n, n)`` float32 array to fill.
        ``initial``: ``(z, n, n)`` starting images of an iterative algorithm (default zero), e.g.
        an earlier SIRT result to continue from.
        """
        if self._alg_id is None:
            raise RuntimeError("this SliceReconstructor is closed")
        n_rows = len(self.angles)
        got = sino3.shape[1] if rows is None else len(rows)
        if sino3.ndim != 3 or got != n_rows or sino3.shape[2] != self.width:
            raise ValueError(f"sinogram of shape {sino3.shape} (rows {got}) does not fit this reconstructor: "
                             f"{n_rows} angles, {self.width} detector columns")
        if out is None:
            out = np.empty((sino3.shape[0], self.n_pixels, self.n_pixels), dtype=np.float32)
        if initial is not None and np.shape(initial) != out.shape:
            raise ValueError(f"initial images of shape {np.shape(initial)} do not fit {out.shape}")
        astra = self._astra
        for iz in range(sino3.shape[0]):
            s = sino3[iz] if rows is None else sino3[iz][rows]
            astra.data2d.store(self._sino_id, centre_slice(s, self.plan))
            astra.data2d.store(self._rec_id, 0.0 if initial is None
                               else np.ascontiguousarray(initial[iz], dtype=np.float32))
            astra.algorithm.run(self._alg_id, self.iterations)
            out[iz] = astra.data2d.get_shared(self._rec_id)
        return out

    def close(self) -> None:
        """Free the ASTRA objects (idempotent)."""
        astra = self._astra
        if self._alg_id is not None:
            astra.algorithm.delete(self._alg_id)
            self._alg_id = None
        for name in ("_sino_id", "_rec_id"):
            did = getattr(self, name)
            if did is not None:
                astra.data2d.delete(did)
                setattr(self, name, None)
        if self._proj_id is not None:
            astra.projector.delete(self._proj_id)
            self._proj_id = None

    def __enter__(self) -> "SliceReconstructor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leak ASTRA memory
        try:
            self.close()
        except Exception:
            pass
