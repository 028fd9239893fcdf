"""FBP and SIRT of whole sinogram stacks, and the reusable set-ups a many-slab caller keeps."""

from __future__ import annotations

import numpy as np

from .astra2d import SliceReconstructor
from .checks import (as_angles, as_sinogram_stack, check_iterations, check_n_pixels, check_pixel_size,
                     check_projector, normalise_filter)
from .gpu import UseGPU, use_cuda

__all__ = ["fbp", "fbp_reconstructor", "sirt", "sirt_reconstructor"]


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
    sino3, ang = as_sinogram_stack(sinogram, angles)
    ps = check_pixel_size(pixel_size)
    with fbp_reconstructor(ang, sino3.shape[2], center=center, n_pixels=n_pixels, filter=filter,
                           use_gpu=use_gpu, filter_d=filter_d) as r:
        rec = r.reconstruct(sino3)
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
    initial: np.ndarray | None = None,
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
    initial : numpy.ndarray, optional
        ``(z, y, x)`` images to start from (default zero): a SIRT result of ``m`` iterations
        continued by ``iterations`` more is the result of ``m + iterations`` from zero.

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` float32, same geometry and scale as :func:`fbp`.
    """
    sino3, ang = as_sinogram_stack(sinogram, angles)
    ps = check_pixel_size(pixel_size)
    start = None if initial is None else np.asarray(initial, dtype=np.float32).reshape(
        (sino3.shape[0],) + np.shape(initial)[-2:]) * np.float32(ps)
    with sirt_reconstructor(ang, sino3.shape[2], center=center, n_pixels=n_pixels, iterations=iterations,
                            use_gpu=use_gpu, min_constraint=min_constraint, projector=projector) as r:
        rec = r.reconstruct(sino3, initial=start)
    if ps != 1.0:
        rec /= np.float32(ps)
    return rec


def fbp_reconstructor(angles: np.ndarray, width: int, *, center: float | None = None, n_pixels: int | None = None,
                      filter: str = "ram-lak", use_gpu: UseGPU = "auto",  # noqa: A002
                      filter_d: float | None = None) -> SliceReconstructor:
    """The set-up of :func:`fbp` for these angles and detector width, to run on many slabs.

    ``r.reconstruct(sino3)`` gives what ``fbp(sino3, angles, ...)`` gives (pixel units);
    close it (or use it in a ``with`` block) to free the ASTRA objects.
    """
    ang = as_angles(angles, len(np.atleast_1d(angles)), np.shape(angles))
    n = check_n_pixels(n_pixels, int(width))
    options: dict = {"FilterType": normalise_filter(filter)}
    if filter_d is not None:
        options["FilterD"] = float(filter_d)
    return SliceReconstructor(ang, int(width), center=center, n_pixels=n, algorithm="FBP", cuda=use_cuda(use_gpu),
                              options=options)


def sirt_reconstructor(angles: np.ndarray, width: int, *, center: float | None = None, n_pixels: int | None = None,
                       iterations: int = 100, use_gpu: UseGPU = "auto", min_constraint: float | None = None,
                       projector: str = "linear") -> SliceReconstructor:
    """The set-up of :func:`sirt` for these angles and detector width, to run on many slabs."""
    ang = as_angles(angles, len(np.atleast_1d(angles)), np.shape(angles))
    n = check_n_pixels(n_pixels, int(width))
    its = check_iterations(iterations)
    options = {} if min_constraint is None else {"MinConstraint": float(min_constraint)}
    return SliceReconstructor(ang, int(width), center=center, n_pixels=n, algorithm="SIRT", cuda=use_cuda(use_gpu),
                              options=options, iterations=its, projector=check_projector(projector))
