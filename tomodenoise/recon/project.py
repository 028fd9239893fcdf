"""Parallel-beam forward projection through ASTRA."""

from __future__ import annotations

import numpy as np

from .checks import CPU_PROJECTORS
from .gpu import UseGPU, astra_module, use_cuda

__all__ = ["forward_project"]


def forward_project(
    volume: np.ndarray,
    angles: np.ndarray,
    n_det: int | None = None,
    *,
    use_gpu: UseGPU = "auto",
    projector: str = "linear",
) -> np.ndarray:
    """Parallel-beam forward projection (line integrals in pixel units), per slice.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(y, x)`` or ``(z, y, x)`` attenuation per pixel, orientation as in the module
        docstring (row 0 is the top, +y up).
    angles : numpy.ndarray
        ``(angle,)`` angles in radians.
    n_det : int, optional
        Number of detector columns; default the volume width ``x``. The rotation axis
        projects onto column ``(n_det - 1) / 2``.
    use_gpu : {"auto", "yes", "no"} or bool
        ``FP_CUDA`` when allowed and available, else the CPU ``FP``.
    projector : {"linear", "strip", "line"}
        CPU projector (ignored on the GPU).

    Returns
    -------
    numpy.ndarray
        ``(z, angle, det)`` float32 (``z = 1`` for a 2D input).
    """
    vol = np.asarray(volume)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3 or min(vol.shape) < 1:
        raise ValueError(f"volume must be (y, x) or (z, y, x), got shape {np.shape(volume)}")
    vol = np.asarray(vol, dtype=np.float32)
    if not np.all(np.isfinite(vol)):
        raise ValueError("volume contains NaN or inf")
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1 or ang.shape[0] < 1 or not np.all(np.isfinite(ang)):
        raise ValueError(f"angles must be a non-empty 1-D array of finite radians, got shape {ang.shape}")
    n_det = vol.shape[2] if n_det is None else n_det
    if isinstance(n_det, bool) or not isinstance(n_det, (int, np.integer)) or n_det < 1:
        raise ValueError(f"n_det must be a positive integer, got {n_det!r}")
    if projector not in CPU_PROJECTORS:
        raise ValueError(f"projector must be one of {CPU_PROJECTORS}, got {projector!r}")
    cuda = use_cuda(use_gpu)
    astra = astra_module()
    vol_geom = astra.create_vol_geom(vol.shape[1], vol.shape[2])
    proj_geom = astra.create_proj_geom("parallel", 1.0, int(n_det), ang)
    out = np.empty((vol.shape[0], ang.shape[0], int(n_det)), dtype=np.float32)
    proj_id = sino_id = vol_id = alg_id = None
    try:
        vol_id = astra.data2d.create("-vol", vol_geom, 0.0)
        sino_id = astra.data2d.create("-sino", proj_geom, 0.0)
        cfg = astra.astra_dict("FP_CUDA" if cuda else "FP")
        cfg["VolumeDataId"] = vol_id
        cfg["ProjectionDataId"] = sino_id
        if not cuda:
            proj_id = astra.create_projector(projector, proj_geom, vol_geom)
            cfg["ProjectorId"] = proj_id
        alg_id = astra.algorithm.create(cfg)
        for iz in range(vol.shape[0]):
            astra.data2d.store(vol_id, vol[iz])
            astra.data2d.store(sino_id, 0.0)
            astra.algorithm.run(alg_id)
            out[iz] = astra.data2d.get_shared(sino_id)
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        for did in (vol_id, sino_id):
            if did is not None:
                astra.data2d.delete(did)
        if proj_id is not None:
            astra.projector.delete(proj_id)
    return out
