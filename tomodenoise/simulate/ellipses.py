"""Small random ellipse phantoms with exact analytic sinograms, for fast tests.

Coordinates are in pixel units with the rotation axis at the origin and the
orientation of :mod:`tomodenoise.recon`: image pixel ``[i, j]`` of an ``n x n`` image is
centred at ``x = j - (n - 1) / 2``, ``y = (n - 1) / 2 - i`` (+y up), and sinogram
column ``c`` of ``n_det`` integrates along ``x cos(theta) + y sin(theta) = u`` with
``u = c - (n_det - 1) / 2``. So ``recon.fbp(ellipse_sinogram(e, angles, n))`` shows
``ellipse_phantom(n, ellipses=e)`` upright.

An ellipse is a row ``(value, x0, y0, a, b, phi)``: attenuation per pixel added inside
it (ellipses add up where they overlap), centre, semi-axes in pixels (``a`` along the
direction at angle ``phi`` from the +x axis, counter-clockwise towards +y), and
``phi`` in radians.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ellipse_phantom", "ellipse_sinogram", "random_ellipses"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def _check_ellipses(ellipses: np.ndarray) -> np.ndarray:
    e = np.asarray(ellipses, dtype=np.float64)
    if e.ndim == 1 and e.shape[0] == 6:
        e = e[None]
    if e.ndim != 2 or e.shape[1] != 6:
        raise ValueError(f"ellipses must be (m, 6) rows (value, x0, y0, a, b, phi), got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("ellipses contain NaN or inf")
    if np.any(e[:, 3:5] <= 0):
        raise ValueError("ellipse semi-axes a, b must be > 0")
    return e


def random_ellipses(n: int, rng: SeedLike = None, n_ellipses: int = 6) -> np.ndarray:
    """Random ellipses that fit inside the circle inscribed in an ``n x n`` image.

    The first ellipse is a large background body (value 1); the others are smaller
    features of value in ``[-0.6, 0.8]`` placed inside it.

    Parameters
    ----------
    n : int
        Image side in pixels (sets the scale).
    rng : int, numpy.random.Generator or None
        Seed or generator; the same seed gives the same ellipses.
    n_ellipses : int
        Number of ellipses (>= 1).

    Returns
    -------
    numpy.ndarray
        ``(n_ellipses, 6)`` float64 rows ``(value, x0, y0, a, b, phi)`` in pixels.
    """
    if n < 4:
        raise ValueError(f"n must be >= 4, got {n}")
    if n_ellipses < 1:
        raise ValueError(f"n_ellipses must be >= 1, got {n_ellipses}")
    gen = np.random.default_rng(rng)
    half = n / 2.0
    rows = []
    # background body: semi-axes 0.6..0.85 of the half width, centred near the middle
    a, b = gen.uniform(0.6, 0.85, 2) * half
    rows.append((1.0, *gen.uniform(-0.05, 0.05, 2) * half, a, b, gen.uniform(0, np.pi)))
    body_r = min(a, b) - 0.08 * half
    for _ in range(n_ellipses - 1):
        ax = gen.uniform(0.05, 0.3, 2) * half
        ax = np.minimum(ax, body_r / 2)
        # centre such that the whole feature stays inside the body's inner circle
        rmax = max(body_r - ax.max(), 0.0)
        rad = rmax * np.sqrt(gen.uniform())
        ang = gen.uniform(0, 2 * np.pi)
        c = np.array(rows[0][1:3]) + rad * np.array([np.cos(ang), np.sin(ang)])
        rows.append((float(gen.uniform(-0.6, 0.8)), c[0], c[1], ax[0], ax[1], gen.uniform(0, np.pi)))
    return np.asarray(rows, dtype=np.float64)


def ellipse_phantom(
    n: int,
    rng: SeedLike = None,
    *,
    ellipses: np.ndarray | None = None,
    n_ellipses: int = 6,
    supersampling: int = 3,
) -> np.ndarray:
    """Rasterise an ellipse phantom on an ``n x n`` grid.

    Parameters
    ----------
    n : int
        Image side.
    rng : int, numpy.random.Generator or None
        Seed for :func:`random_ellipses` when ``ellipses`` is not given.
    ellipses : numpy.ndarray, optional
        ``(m, 6)`` ellipses in pixels (see the module docstring).
    n_ellipses : int
        Number of random ellipses when ``ellipses`` is not given.
    supersampling : int
        ``s x s`` sub-samples per pixel (area-fraction anti-aliasing); 1 = centres.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float32 (attenuation per pixel).
    """
    e = random_ellipses(n, rng, n_ellipses) if ellipses is None else _check_ellipses(ellipses)
    s = int(supersampling)
    if s < 1:
        raise ValueError(f"supersampling must be >= 1, got {supersampling}")
    sub = (np.arange(s) + 0.5) / s - 0.5
    x = (np.arange(n)[:, None] - (n - 1) / 2 + sub[None, :]).ravel()  # (n*s,) x of sub-columns
    y = ((n - 1) / 2 - np.arange(n)[:, None] - sub[None, :]).ravel()  # (n*s,) y of sub-rows
    img = np.zeros((n * s, n * s), dtype=np.float64)
    for value, x0, y0, a, b, phi in e:
        c, sn = np.cos(phi), np.sin(phi)
        dx = x[None, :] - x0
        dy = y[:, None] - y0
        p = (dx * c + dy * sn) / a
        q = (-dx * sn + dy * c) / b
        img += value * (p * p + q * q <= 1.0)
    return img.reshape(n, s, n, s).mean(axis=(1, 3)).astype(np.float32)


def ellipse_sinogram(
    ellipses: np.ndarray,
    angles: np.ndarray,
    n_det: int,
    *,
    supersampling: int = 1,
    center: float | None = None,
) -> np.ndarray:
    """Exact parallel-beam line integrals of an ellipse phantom.

    Parameters
    ----------
    ellipses : numpy.ndarray
        ``(m, 6)`` rows ``(value, x0, y0, a, b, phi)`` in pixels.
    angles : numpy.ndarray
        ``(angle,)`` radians.
    n_det : int
        Detector columns (unit width); column ``c`` is at ``u = c - (n_det - 1) / 2``.
    supersampling : int
        Average of ``s`` equally spaced rays per detector pixel (1 = the centre ray).
    center : float, optional
        Detector column (0-based) onto which the rotation axis projects; default
        ``(n_det - 1) / 2``. Column ``c`` then sits at ``u = c - center``, which
        simulates a scan with an off-centre rotation axis.

    Returns
    -------
    numpy.ndarray
        ``(angle, det)`` float32 line integrals in pixel units.
    """
    e = _check_ellipses(ellipses)
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1:
        raise ValueError(f"angles must be 1-D, got shape {ang.shape}")
    if n_det < 1:
        raise ValueError(f"n_det must be >= 1, got {n_det}")
    s = int(supersampling)
    if s < 1:
        raise ValueError(f"supersampling must be >= 1, got {supersampling}")
    c0 = (n_det - 1) / 2 if center is None else float(center)
    sub = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(n_det)[:, None] - c0 + sub[None, :]).ravel()
    sino = np.zeros((ang.shape[0], u.shape[0]), dtype=np.float64)
    cos, sin = np.cos(ang), np.sin(ang)
    for value, x0, y0, a, b, phi in e:
        # squared half-width of the ellipse's shadow at each angle
        w2 = (a * np.cos(ang - phi)) ** 2 + (b * np.sin(ang - phi)) ** 2
        t = u[None, :] - (x0 * cos + y0 * sin)[:, None]
        sino += value * (2.0 * a * b / w2)[:, None] * np.sqrt(np.maximum(w2[:, None] - t * t, 0.0))
    return sino.reshape(ang.shape[0], n_det, s).mean(axis=2).astype(np.float32)
