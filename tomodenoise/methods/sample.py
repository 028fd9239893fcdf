"""Small simulated foam scans with everything the comparison can use (tests, examples).

:func:`foam_scan` returns a :class:`~tomodenoise.methods.base.Scan` with the noisy sinogram,
the clean FBP as reference, the clean sinogram and, optionally, an independent repeat scan
(fresh Poisson noise on the same object) for Noise2Noise.
"""

from __future__ import annotations

import numpy as np

from ..recon import fbp
from ..simulate.foam import generate_foam, project_foam
from ..simulate.noise import poisson_noise
from .base import Scan

__all__ = ["foam_scan", "foam_phantom_sino"]


def foam_phantom_sino(seed: int, *, n_slices: int, n_det: int, n_angles: int, n_spheres: int = 60,
                      spheres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Clean line integrals ``(z, angle, det)`` (pixel units) of a random foam, its angles, pixel size."""
    sph = generate_foam(seed, n_spheres=n_spheres) if spheres is None else spheres
    pixel = 2.0 / n_det
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    z = (np.arange(n_slices) - (n_slices - 1) / 2) * pixel * 4  # rows a few pixels apart
    return project_foam(sph, angles, n_det, z, pixel, supersampling=1), angles, pixel


def foam_scan(seed: int = 0, *, n_slices: int = 3, n_det: int = 32, n_angles: int = 96, i0: float = 50.0,
              n_spheres: int = 60, second: bool = False, absorption: float = 2.76) -> Scan:
    """A noisy foam scan of ``n_slices`` x ``n_angles`` x ``n_det`` with its clean FBP as reference."""
    clean_sino, angles, pixel = foam_phantom_sino(seed, n_slices=n_slices, n_det=n_det, n_angles=n_angles,
                                                  n_spheres=n_spheres)
    rng = np.random.default_rng(seed + 1)

    def noisy() -> np.ndarray:
        return poisson_noise(clean_sino * pixel, i0, absorption, rng) / pixel

    clean = fbp(clean_sino, angles)
    first = Scan(sino=noisy(), angles=angles, clean=clean, clean_sino=clean_sino, i0=i0, name=f"foam-{seed}")
    if second:
        first.second = Scan(sino=noisy(), angles=angles, clean=clean, clean_sino=clean_sino, i0=i0,
                            name=f"foam-{seed}-repeat")
    return first
