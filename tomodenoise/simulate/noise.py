"""The Poisson noise model of the Noise2Inverse foam benchmark.

For a projection ``p`` (line integral in the phantom's physical units, where the foam
material has attenuation 1 per unit length) the detector counts are

    counts ~ Poisson(I0 * exp(-absorption * p)),   counts == 0 -> 1,

and the noisy line integral is ``-log(counts / I0) / absorption``. The benchmark uses
``absorption = 2.76`` (about 50 % mean absorption over the detector region that the
cylinder covers) and ``I0 = 10`` photons (about 4 % zero counts).

Units: :func:`tomodenoise.simulate.foam.project_foam` returns line integrals in *pixel
units* (physical / pixel size). Pass ``pixel_size`` (e.g. ``2 / 512``) with such input:
the physical line integral is ``line_integrals * pixel_size``, and
:func:`poisson_noise` returns the noisy line integrals in the input's units again. Leave
``pixel_size=1`` when the input is already in physical units.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["photon_counts", "poisson_noise"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def _check(line_integrals: np.ndarray, i0: float, absorption: float, pixel_size: float) -> np.ndarray:
    p = np.asarray(line_integrals, dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("line_integrals contain NaN or inf")
    for name, v in (("i0", i0), ("absorption", absorption), ("pixel_size", pixel_size)):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return p


def photon_counts(
    line_integrals: np.ndarray,
    i0: float,
    absorption: float = 2.76,
    rng: SeedLike = None,
    *,
    pixel_size: float = 1.0,
    zero_to_one: bool = True,
) -> np.ndarray:
    """Draw detector photon counts for given line integrals.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free line integrals, any shape; in physical units, or in pixel units
        together with ``pixel_size``.
    i0 : float
        Mean incident photon count per detector pixel (the flat field; dark = 0).
    absorption : float
        Factor applied to the physical line integrals (benchmark: 2.76).
    rng : int, numpy.random.Generator or None
        Seed or generator (same seed, same counts).
    pixel_size : float
        Physical size of a pixel when the input is in pixel units (default 1).
    zero_to_one : bool
        Replace zero counts by 1, as the benchmark does (default True), so that
        flat/dark correction and -log of the counts reproduce :func:`poisson_noise`.

    Returns
    -------
    numpy.ndarray
        Counts, same shape, float32 (integer values).
    """
    p = _check(line_integrals, i0, absorption, pixel_size)
    gen = np.random.default_rng(rng)
    lam = float(i0) * np.exp(-float(absorption) * float(pixel_size) * p)
    counts = gen.poisson(lam)
    if zero_to_one:
        np.maximum(counts, 1, out=counts)
    return counts.astype(np.float32)


def poisson_noise(
    line_integrals: np.ndarray,
    i0: float,
    absorption: float = 2.76,
    rng: SeedLike = None,
    *,
    pixel_size: float = 1.0,
) -> np.ndarray:
    """Apply the benchmark's Poisson noise model to line integrals.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free line integrals, any shape; physical units, or pixel units together
        with ``pixel_size`` (as returned by ``project_foam``).
    i0 : float
        Mean incident photons per pixel (benchmark: 10).
    absorption : float
        Factor on the physical line integrals (benchmark: 2.76).
    rng : int, numpy.random.Generator or None
        Seed or generator.
    pixel_size : float
        Physical pixel size when the input is in pixel units (default 1).

    Returns
    -------
    numpy.ndarray
        Noisy line integrals, same shape and units as the input, float32:
        ``-log(max(counts, 1) / i0) / (absorption * pixel_size)``.
    """
    counts = photon_counts(line_integrals, i0, absorption, rng, pixel_size=pixel_size, zero_to_one=True)
    noisy = -np.log(counts.astype(np.float64) / float(i0)) / (float(absorption) * float(pixel_size))
    return noisy.astype(np.float32)
