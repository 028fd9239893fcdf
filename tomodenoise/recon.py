"""Tomographic reconstruction (FBP, SIRT) and forward projection through ASTRA.

Geometry and orientation convention
-----------------------------------
Parallel beam, 2D per detector row (slices along ``z`` are independent). All lengths
are in detector pixels (voxel size = detector pixel size = 1) unless a
``pixel_size`` is passed.

* Reconstruction pixel ``rec[..., i, j]`` of an ``n x n`` grid is centred at
  ``x = j - (n - 1) / 2`` and ``y = (n - 1) / 2 - i``: ``x`` grows with the column
  index, ``y`` points *up* (it grows as the row index decreases), the rotation axis is
  at ``x = y = 0``, the middle of the grid. This is ASTRA's native 2D convention and
  the "image display" convention (``imshow`` shows the +y axis upwards).
* Sinogram entry ``sino[..., a, c]`` is the line integral along the line
  ``x cos(theta_a) + y sin(theta_a) = u`` with ``u = c - center`` (``center`` is the
  0-based detector column of the rotation axis, default ``(W - 1) / 2``). At
  ``theta = 0`` the detector axis ``u`` is parallel to ``x`` (rays travel along ``y``);
  at ``theta = pi / 2`` it is parallel to ``y``. :func:`tomodenoise.simulate.foam.project_foam`
  and :func:`tomodenoise.simulate.ellipses.ellipse_sinogram` use the same convention,
  so their FBPs show the phantoms upright and unflipped in this frame.
* This reproduces ASTRA's own FBP of the reference data set ``nabu_fbp``
  (``mri_sino500.npz`` -> ``mri_rec_astra.npz``) without any flip or transpose.

Scale
-----
A sinogram of line integrals in pixel units reconstructs to attenuation per pixel:
a uniform disk of attenuation 1 gives 1. FBP weights every projection by
``pi / n_angles`` (what ASTRA does for parallel beam, verified in the unit tests), so
every call is on the same scale whatever the number of angles and, for interlaced
splits of equal size, ``mean_j fbp(split_j) == fbp(all)`` to float precision. With
``pixel_size`` given, the sinogram is taken to be in physical length units times
attenuation and the result is divided by ``pixel_size`` (attenuation per physical
unit).

Centre of rotation
------------------
ASTRA's CPU FBP supports only the plain ``parallel`` geometry (rotation axis in the
middle of the detector), so the sinogram is re-centred before reconstruction: it is
padded on one side (edge values, no data lost) by the integer number of columns that
brings the axis to the middle of the widened detector, and any residual shift (at most
a quarter pixel; zero for integer and half-integer centres) is applied with cubic
spline interpolation. The reconstruction grid (default ``n = W``, the original width)
is centred on the rotation axis.

GPU
---
CUDA algorithms (``FBP_CUDA``, ``SIRT_CUDA``, ``FP_CUDA``) are used only when
``astra.use_cuda()`` is True and ``use_gpu`` is not ``"no"``. A CUDA call of ASTRA on a
machine without a GPU kills the process, so this is checked before every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from tomodenoise.splits import split_sinogram

__all__ = [
    "ASTRA_FILTERS",
    "fbp",
    "forward_project",
    "gpu_available",
    "reconstruct_splits",
    "sirt",
]

UseGPU = Literal["auto", "yes", "no"] | bool

#: FBP filter names accepted by ASTRA's FBP / FBP_CUDA (``filter=`` argument).
#: Filters from ``"tukey"`` on take a parameter (``filter_d``, ASTRA's ``FilterD``).
ASTRA_FILTERS: tuple[str, ...] = (
    "ram-lak",
    "shepp-logan",
    "cosine",
    "hamming",
    "hann",
    "none",
    "tukey",
    "lanczos",
    "triangular",
    "gaussian",
    "barlett-hann",
    "blackman",
    "nuttall",
    "blackman-harris",
    "blackman-nuttall",
    "flat-top",
    "kaiser",
    "parzen",
)

_FILTER_ALIASES = {"ramlak": "ram-lak", "ram_lak": "ram-lak", "shepp_logan": "shepp-logan",
                   "shepplogan": "shepp-logan", "hanning": "hann", "bartlett-hann": "barlett-hann"}

_CPU_PROJECTORS = ("linear", "strip", "line")


# --------------------------------------------------------------------------- helpers


def _astra():
    import astra  # imported lazily: importing tomodenoise must not require ASTRA

    return astra


def gpu_available() -> bool:
    """Whether ASTRA can run CUDA algorithms here.

    Returns
    -------
    bool
        ``astra.use_cuda()``; False when ASTRA is missing or the check fails.
    """
    try:
        return bool(_astra().use_cuda())
    except Exception:  # pragma: no cover - ASTRA missing or broken
        return False


def _use_cuda(use_gpu: UseGPU) -> bool:
    """Resolve the ``use_gpu`` argument; never True unless ``astra.use_cuda()``."""
    if use_gpu is True:
        mode = "yes"
    elif use_gpu is False:
        mode = "no"
    elif isinstance(use_gpu, str) and use_gpu.lower() in ("auto", "yes", "no"):
        mode = use_gpu.lower()
    else:
        raise ValueError(f"use_gpu must be 'auto', 'yes', 'no' (or a bool), got {use_gpu!r}")
    if mode == "no":
        return False
    available = gpu_available()
    if mode == "yes" and not available:
        raise RuntimeError("use_gpu='yes' but ASTRA reports no usable CUDA GPU (astra.use_cuda() is False)")
    return available


def _as_sinogram_stack(sinogram: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(z, angle, det)`` float32 and ``(angle,)`` float64 angles."""
    sino = np.asarray(sinogram)
    if sino.ndim == 2:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(f"sinogram must be (angle, det) or (z, angle, det), got shape {np.shape(sinogram)}")
    if min(sino.shape) < 1:
        raise ValueError(f"sinogram has an empty axis: shape {sino.shape}")
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1 or ang.shape[0] != sino.shape[1]:
        raise ValueError(
            f"angles must be 1-D with one angle per projection: got {ang.shape} angles for a "
            f"sinogram with {sino.shape[1]} angles (shape {np.shape(sinogram)})"
        )
    if not np.all(np.isfinite(ang)):
        raise ValueError("angles contain NaN or inf")
    sino = np.asarray(sino, dtype=np.float32)
    if not np.all(np.isfinite(sino)):
        raise ValueError("sinogram contains NaN or inf")
    return sino, ang


def _check_n_pixels(n_pixels: int | None, width: int) -> int:
    if n_pixels is None:
        return int(width)
    if isinstance(n_pixels, bool) or not isinstance(n_pixels, (int, np.integer)) or n_pixels < 1:
        raise ValueError(f"n_pixels must be a positive integer, got {n_pixels!r}")
    return int(n_pixels)


def _check_pixel_size(pixel_size: float) -> float:
    ps = float(pixel_size)
    if not (math.isfinite(ps) and ps > 0):
        raise ValueError(f"pixel_size must be a positive finite number, got {pixel_size!r}")
    return ps


def _centre_plan(width: int, center: float | None) -> tuple[int, int, float]:
    """Padding ``(left, right)`` and residual sub-pixel shift that centre the axis.

    After padding, column ``center + left`` is the axis; shifting the data by
    ``frac = (W' - 1) / 2 - (center + left)`` columns (``|frac| <= 0.25``) puts it at
    the middle ``(W' - 1) / 2`` of the padded detector of width ``W'``.
    """
    if center is None:
        return 0, 0, 0.0
    c = float(center)
    if not math.isfinite(c):
        raise ValueError(f"center must be finite, got {center!r}")
    if not (-0.5 <= c <= width - 0.5):
        raise ValueError(f"center {c} (0-based detector column) lies outside the detector of width {width}")
    twice = int(round(2.0 * c))
    d2 = twice - (width - 1)
    left, right = (0, d2) if d2 >= 0 else (-d2, 0)
    frac = twice / 2.0 - c
    if abs(frac) < 1e-9:
        frac = 0.0
    return left, right, frac


def _centre_slice(sino2d: np.ndarray, plan: tuple[int, int, float]) -> np.ndarray:
    left, right, frac = plan
    out = sino2d
    if left or right:
        out = np.pad(out, ((0, 0), (left, right)), mode="edge")
    if frac:
        out = ndimage.shift(out.astype(np.float64), (0.0, frac), order=3, mode="nearest")
    return np.ascontiguousarray(out, dtype=np.float32)


def _normalise_filter(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"filter must be a string, one of {ASTRA_FILTERS}, got {name!r}")
    key = name.strip().lower()
    key = _FILTER_ALIASES.get(key, key)
    if key not in ASTRA_FILTERS:
        raise ValueError(f"unknown FBP filter {name!r}; choose one of {ASTRA_FILTERS}")
    return key


def _run_2d(
    sino3: np.ndarray,
    angles: np.ndarray,
    *,
    center: float | None,
    n_pixels: int,
    algorithm: str,
    cuda: bool,
    options: dict | None = None,
    iterations: int = 1,
    projector: str = "linear",
) -> np.ndarray:
    """Run one ASTRA 2D reconstruction algorithm over all slices of ``sino3``.

    The geometry, projector, data objects and algorithm are created once and reused
    for every slice; all ASTRA objects are freed on exit.
    """
    astra = _astra()
    plan = _centre_plan(sino3.shape[2], center)
    width = sino3.shape[2] + plan[0] + plan[1]
    vol_geom = astra.create_vol_geom(n_pixels, n_pixels)
    proj_geom = astra.create_proj_geom("parallel", 1.0, width, angles)
    out = np.empty((sino3.shape[0], n_pixels, n_pixels), dtype=np.float32)
    proj_id = sino_id = rec_id = alg_id = None
    try:
        sino_id = astra.data2d.create("-sino", proj_geom, 0.0)
        rec_id = astra.data2d.create("-vol", vol_geom, 0.0)
        cfg = astra.astra_dict(algorithm + ("_CUDA" if cuda else ""))
        cfg["ProjectionDataId"] = sino_id
        cfg["ReconstructionDataId"] = rec_id
        if not cuda:
            proj_id = astra.create_projector(projector, proj_geom, vol_geom)
            cfg["ProjectorId"] = proj_id
        if options:
            cfg["option"] = dict(options)
        alg_id = astra.algorithm.create(cfg)
        for iz in range(sino3.shape[0]):
            astra.data2d.store(sino_id, _centre_slice(sino3[iz], plan))
            astra.data2d.store(rec_id, 0.0)
            astra.algorithm.run(alg_id, iterations)
            out[iz] = astra.data2d.get_shared(rec_id)
    finally:
        if alg_id is not None:
            astra.algorithm.delete(alg_id)
        for did in (sino_id, rec_id):
            if did is not None:
                astra.data2d.delete(did)
        if proj_id is not None:
            astra.projector.delete(proj_id)
    return out


# --------------------------------------------------------------------------- public


def fbp(
    sinogram: np.ndarray,
    angles: np.ndarray,
    *,
    center: float | None = None,
    n_pixels: int | None = None,
    filter: str = "ram-lak",  # noqa: A002 - the contract's name
    use_gpu: UseGPU = "auto",
    pixel_size: float = 1.0,
    filter_d: float | None = None,
) -> np.ndarray:
    """Filtered back-projection of parallel-beam sinograms, slice by slice.

    Parameters
    ----------
    sinogram : numpy.ndarray
        Line integrals ``(angle, det)`` or ``(z, angle, det)``.
    angles : numpy.ndarray
        ``(angle,)`` projection angles in radians (any coverage; usually ``[0, pi)``).
    center : float, optional
        0-based detector column of the rotation axis; default ``(W - 1) / 2``.
    n_pixels : int, optional
        Side of the square reconstruction grid; default the detector width ``W``.
    filter : str
        ASTRA filter name (see :data:`ASTRA_FILTERS`), default Ram-Lak.
    use_gpu : {"auto", "yes", "no"} or bool
        ``"auto"`` uses ``FBP_CUDA`` when ``astra.use_cuda()``; ``"yes"`` raises
        RuntimeError without a GPU; ``"no"`` always uses the CPU ``FBP``.
    pixel_size : float
        Detector pixel (= voxel) size when the sinogram is in physical units; the
        result is divided by it. Default 1 (pixel units).
    filter_d : float, optional
        Parameter of the parametrised filters (ASTRA's ``FilterD``).

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32 attenuation per pixel (``z = 1`` for a 2D sinogram), in
        the orientation described in the module docstring. Each call weights its
        projections by ``pi / n_angles``, so the mean of the FBPs of equal-size
        interlaced splits equals the FBP of all angles.

    Raises
    ------
    ValueError
        Bad shapes, NaN/inf, angle count mismatch, unknown filter, centre outside the
        detector.
    """
    sino3, ang = _as_sinogram_stack(sinogram, angles)
    n = _check_n_pixels(n_pixels, sino3.shape[2])
    ps = _check_pixel_size(pixel_size)
    options: dict = {"FilterType": _normalise_filter(filter)}
    if filter_d is not None:
        options["FilterD"] = float(filter_d)
    cuda = _use_cuda(use_gpu)
    rec = _run_2d(sino3, ang, center=center, n_pixels=n, algorithm="FBP", cuda=cuda, options=options)
    if ps != 1.0:
        rec /= np.float32(ps)
    return rec


def sirt(
    sinogram: np.ndarray,
    angles: np.ndarray,
    *,
    center: float | None = None,
    n_pixels: int | None = None,
    iterations: int = 100,
    use_gpu: UseGPU = "auto",
    min_constraint: float | None = None,
    projector: str = "linear",
    pixel_size: float = 1.0,
) -> np.ndarray:
    """SIRT reconstruction of parallel-beam sinograms, slice by slice.

    Parameters
    ----------
    sinogram : numpy.ndarray
        Line integrals ``(angle, det)`` or ``(z, angle, det)``.
    angles : numpy.ndarray
        ``(angle,)`` angles in radians.
    center : float, optional
        0-based detector column of the rotation axis; default ``(W - 1) / 2``.
    n_pixels : int, optional
        Side of the square reconstruction grid; default the detector width.
    iterations : int
        Number of SIRT iterations (each slice starts from zero).
    use_gpu : {"auto", "yes", "no"} or bool
        As in :func:`fbp` (``SIRT_CUDA`` vs CPU ``SIRT``).
    min_constraint : float, optional
        Lower bound on the values (e.g. 0), ASTRA's ``MinConstraint``.
    projector : {"linear", "strip", "line"}
        CPU projector (ignored on the GPU).
    pixel_size : float
        As in :func:`fbp`.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32, same geometry and scale as :func:`fbp`.
    """
    sino3, ang = _as_sinogram_stack(sinogram, angles)
    n = _check_n_pixels(n_pixels, sino3.shape[2])
    ps = _check_pixel_size(pixel_size)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if projector not in _CPU_PROJECTORS:
        raise ValueError(f"projector must be one of {_CPU_PROJECTORS}, got {projector!r}")
    options = {} if min_constraint is None else {"MinConstraint": float(min_constraint)}
    cuda = _use_cuda(use_gpu)
    rec = _run_2d(
        sino3, ang, center=center, n_pixels=n, algorithm="SIRT", cuda=cuda,
        options=options, iterations=int(iterations), projector=projector,
    )
    if ps != 1.0:
        rec /= np.float32(ps)
    return rec


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
    if projector not in _CPU_PROJECTORS:
        raise ValueError(f"projector must be one of {_CPU_PROJECTORS}, got {projector!r}")
    cuda = _use_cuda(use_gpu)
    astra = _astra()
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


def reconstruct_splits(
    sinogram: np.ndarray,
    angles: np.ndarray,
    k: int,
    *,
    method: str | Callable[..., np.ndarray] = "fbp",
    **kw,
) -> np.ndarray:
    """Reconstruct each of the ``k`` interlaced angle splits on its own.

    Parameters
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` (or ``(angle, det)``) line integrals.
    angles : numpy.ndarray
        ``(angle,)`` angles in radians.
    k : int
        Number of splits (split ``j`` = angles ``j, j + k, ...``).
    method : {"fbp", "sirt"} or callable
        Reconstruction per split; a callable is called as ``method(sino_j, angles_j, **kw)``.
    **kw
        Passed to the method (``center``, ``n_pixels``, ``filter``, ``use_gpu``, ...).

    Returns
    -------
    numpy.ndarray
        ``(split, z, y, x)`` float32. With :func:`fbp` and ``n_angles`` a multiple of
        ``k``, ``result.mean(axis=0)`` equals ``fbp(sinogram, angles, **kw)``.
    """
    funcs: dict[str, Callable[..., np.ndarray]] = {"fbp": fbp, "sirt": sirt}
    if callable(method):
        func = method
    elif method in funcs:
        func = funcs[method]
    else:
        raise ValueError(f"method must be 'fbp', 'sirt' or a callable, got {method!r}")
    sino3, ang = _as_sinogram_stack(sinogram, angles)
    recs: Sequence[np.ndarray] = [func(s, a, **kw) for s, a in split_sinogram(sino3, ang, k)]
    return np.stack([np.asarray(r, dtype=np.float32) for r in recs], axis=0)
