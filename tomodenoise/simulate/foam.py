"""The foam phantom of the Noise2Inverse benchmark: exact analytic projections.

The object is a cylinder of radius 1 along ``z`` (infinitely long; attenuation 1 per
unit length) containing non-overlapping spheres ``(x, y, z, r, density)``; inside a
sphere the attenuation is ``density`` (0 for the voids of the benchmark foam). Lengths
are in the phantom's units (the cylinder radius is 1).

Geometry (the convention of :mod:`tomodenoise.recon`): parallel beam along the plane
``z = const`` of each detector row; detector column ``c`` of ``n_det`` sits at
``u = (c - (n_det - 1) / 2) * pixel_size`` and the ray at angle ``theta`` is the line
``x cos(theta) + y sin(theta) = u`` with +y pointing *up* in the reconstruction, i.e.
reconstruction pixel ``[i, j]`` is centred at ``x = (j - (n - 1) / 2) * pixel_size``,
``y = ((n - 1) / 2 - i) * pixel_size``. :func:`foam_slice` rasterises in that frame,
so ``recon.fbp(project_foam(...)[k])`` matches ``foam_slice(..., z=z_positions[k])``.

Units of the projections: :func:`project_foam` returns line integrals in *pixel
units* (physical line integral / ``pixel_size``) so that an FBP with unit voxels (voxel
= detector pixel) gives attenuation 1 in the foam material. The noise model
(:mod:`tomodenoise.simulate.noise`) takes a ``pixel_size`` argument to convert back.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["foam_slice", "generate_foam", "load_spheres", "project_foam"]

CYLINDER_RADIUS = 1.0


# --------------------------------------------------------------------------- spheres


def _check_spheres(spheres: np.ndarray) -> np.ndarray:
    s = np.asarray(spheres, dtype=np.float64)
    if s.ndim == 1 and s.shape[0] == 5:
        s = s[None]
    if s.ndim != 2 or s.shape[1] != 5:
        raise ValueError(f"spheres must be (n, 5) rows (x, y, z, r, density), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("spheres contain NaN or inf")
    if np.any(s[:, 3] <= 0):
        raise ValueError("sphere radii must be > 0")
    return s


def load_spheres(path: str | os.PathLike) -> np.ndarray:
    """Read the spheres of a foam phantom file (``phantom.h5`` of the benchmark).

    Parameters
    ----------
    path : str or os.PathLike
        HDF5 file with a dataset ``spheres``: float ``(5 n,)`` (or ``(n, 5)``) holding
        ``n`` rows ``(x, y, z, r, density)``. Opened read-only.

    Returns
    -------
    numpy.ndarray
        ``(n, 5)`` float32.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the dataset is missing or malformed (message names file and dataset).
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"foam phantom file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "spheres" not in f:
                raise ValueError(
                    f"{path}: dataset 'spheres' missing; expected float (5 n,) = n x (x, y, z, r, density), "
                    f"found datasets {sorted(f.keys())}"
                )
            data = np.asarray(f["spheres"][...], dtype=np.float64)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read as HDF5 ({exc})") from exc
    if data.ndim == 2 and data.shape[1] == 5:
        arr = data
    elif data.ndim == 1 and data.size % 5 == 0 and data.size > 0:
        arr = data.reshape(-1, 5)
    else:
        raise ValueError(f"{path}: dataset 'spheres' must be (5 n,) or (n, 5) floats, found shape {data.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 3] <= 0):
        raise ValueError(f"{path}: dataset 'spheres' holds NaN/inf or non-positive radii")
    return arr.astype(np.float32)


def generate_foam(
    seed: int | np.random.Generator | None,
    n_spheres: int = 1000,
    max_radius: float = 0.2,
    *,
    n_trials: int | None = None,
    z_range: float = 1.0,
    density: float = 0.0,
) -> np.ndarray:
    """Generate a random foam: non-overlapping spheres inside the unit cylinder.

    In the spirit of the benchmark's generator: ``n_trials`` random candidate centres
    are drawn uniformly in the cylinder (``|z| <= z_range``); each candidate can hold a
    sphere of radius ``min(max_radius, distance to the cylinder wall, distance to the
    surface of the nearest placed sphere)``. The candidate with the largest such radius
    becomes the next sphere, so spheres are placed largest first with non-increasing
    radii. A KD-tree over the candidates and a lazy max-heap keep this fast (10 000
    spheres in a few seconds).

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        Seed (same seed, same foam).
    n_spheres : int
        Number of spheres to place (fewer if the candidates run out).
    max_radius : float
        Largest sphere radius.
    n_trials : int, optional
        Number of candidate centres; default ``10 * n_spheres``.
    z_range : float
        Candidate centres have ``|z| <= z_range`` (spheres may poke out in z).
    density : float
        Attenuation inside the spheres (0 = voids).

    Returns
    -------
    numpy.ndarray
        ``(n, 5)`` float32 rows ``(x, y, z, r, density)``, radii non-increasing.
    """
    if n_spheres < 1:
        raise ValueError(f"n_spheres must be >= 1, got {n_spheres}")
    if not (0 < max_radius <= CYLINDER_RADIUS):
        raise ValueError(f"max_radius must be in (0, 1], got {max_radius}")
    if z_range <= 0:
        raise ValueError(f"z_range must be > 0, got {z_range}")
    n_trials = 10 * int(n_spheres) if n_trials is None else int(n_trials)
    if n_trials < n_spheres:
        raise ValueError(f"n_trials ({n_trials}) must be >= n_spheres ({n_spheres})")
    rng = np.random.default_rng(seed)
    rr = CYLINDER_RADIUS * np.sqrt(rng.uniform(size=n_trials))
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n_trials)
    pts = np.column_stack([rr * np.cos(phi), rr * np.sin(phi), rng.uniform(-z_range, z_range, size=n_trials)])
    rad = np.minimum(max_radius, CYLINDER_RADIUS - rr)
    alive = rad > 0
    tree = cKDTree(pts)
    heap = [(-r, i) for i, r in enumerate(rad.tolist())]
    heapq.heapify(heap)
    out = []
    while heap and len(out) < n_spheres:
        neg_r, i = heapq.heappop(heap)
        if not alive[i]:
            continue
        r = rad[i]
        if -neg_r > r:  # stale entry: radius shrank since it was pushed
            heapq.heappush(heap, (-r, i))
            continue
        centre = pts[i]
        out.append((centre[0], centre[1], centre[2], r))
        alive[i] = False
        nb = np.asarray(tree.query_ball_point(centre, 2.0 * r), dtype=np.int64)
        if nb.size:
            nb = nb[alive[nb]]
            dist = np.sqrt(((pts[nb] - centre) ** 2).sum(axis=1)) - r
            rad[nb] = np.minimum(rad[nb], dist)
            alive[nb[rad[nb] <= 0]] = False
    res = np.zeros((len(out), 5), dtype=np.float64)
    res[:, :4] = out
    res[:, 4] = density
    return res.astype(np.float32)


# --------------------------------------------------------------------------- projection


def _circles_in_plane(sph: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Circles cut by the plane ``z``: centres x, y, squared radii, weights (density - 1)."""
    dz = z - sph[:, 2]
    rho2 = sph[:, 3] ** 2 - dz * dz
    m = rho2 > 0
    return sph[m, 0], sph[m, 1], rho2[m], sph[m, 4] - 1.0


def _add_circle_chords(
    acc: np.ndarray,
    xc: np.ndarray,
    yc: np.ndarray,
    rho2: np.ndarray,
    weight: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    u0: float,
    du: float,
    max_elems: int,
) -> None:
    """Add ``weight * chord`` of every circle to ``acc (angle, sub_ray)`` in place.

    Sub-ray ``k`` sits at ``u = u0 + k du``. For each (angle, circle) only the band of
    sub-rays that the circle's shadow covers is evaluated; the work is vectorised over
    all (angle, circle) pairs of a chunk of angles with ``np.repeat`` + ``np.bincount``.
    """
    n_ang, n_sub = acc.shape
    nc = xc.shape[0]
    if nc == 0:
        return
    rho = np.sqrt(rho2)
    per_angle = float(np.sum(2.0 * rho / du + 1.0))
    chunk = int(max(1, min(n_ang, max_elems // max(per_angle, 1.0))))
    uniform_w = bool(np.all(weight == weight[0]))
    jbuf = np.arange(int(chunk * per_angle) + chunk * nc + 1, dtype=np.int64)
    for a0 in range(0, n_ang, chunk):
        a1 = min(n_ang, a0 + chunk)
        na = a1 - a0
        p = cos[a0:a1, None] * xc[None, :] + sin[a0:a1, None] * yc[None, :]  # (na, nc)
        klo = np.maximum(np.ceil((p - rho - u0) / du), 0).astype(np.int64)
        khi = np.minimum(np.floor((p + rho - u0) / du), n_sub - 1).astype(np.int64)
        cnt = np.maximum(khi - klo + 1, 0).ravel()
        total = int(cnt.sum())
        if total == 0:
            continue
        if total > jbuf.shape[0]:
            jbuf = np.arange(total, dtype=np.int64)
        j = jbuf[:total]
        start = np.cumsum(cnt) - cnt
        kbase = klo.ravel() - start  # sub-ray index = j + kbase
        ibase = kbase + (np.arange(na, dtype=np.int64) * n_sub)[:, None].repeat(nc, axis=1).ravel()
        dbase = kbase * du + u0 - p.ravel()  # offset from the circle's centre = j du + dbase
        d = j * du + np.repeat(dbase, cnt)
        chord2 = np.broadcast_to(rho2, (na, nc)).ravel()
        val = np.repeat(chord2, cnt)
        val -= d * d
        np.maximum(val, 0.0, out=val)
        np.sqrt(val, out=val)
        if uniform_w:
            val *= 2.0 * weight[0]
        else:
            val *= 2.0 * np.repeat(np.broadcast_to(weight, (na, nc)).ravel(), cnt)
        idx = j + np.repeat(ibase, cnt)
        acc[a0:a1] += np.bincount(idx, weights=val, minlength=na * n_sub).reshape(na, n_sub)


def project_foam(
    spheres: np.ndarray,
    angles: np.ndarray,
    n_det: int,
    z_positions: float | Sequence[float] | np.ndarray,
    pixel_size: float,
    supersampling: int = 2,
    *,
    max_elems: int = 2_000_000,
) -> np.ndarray:
    """Exact analytic parallel-beam projections of the foam phantom.

    For a ray in the plane ``z`` at angle ``theta`` and offset ``u`` (the line
    ``x cos(theta) + y sin(theta) = u``), the line integral is the chord through the
    cylinder's unit disk, ``2 sqrt(1 - u^2)``, plus ``(density - 1)`` times the chord
    through each circle ``sqrt(r^2 - (z - z_c)^2)`` that the plane cuts out of a sphere
    (spheres must lie inside the cylinder and not overlap, as generated). Each detector
    pixel averages ``s x s`` sub-rays (``s`` sub-positions in ``u`` and in ``z``).

    Parameters
    ----------
    spheres : numpy.ndarray
        ``(n, 5)`` rows ``(x, y, z, r, density)`` (see :func:`load_spheres`).
    angles : numpy.ndarray
        ``(angle,)`` radians.
    n_det : int
        Detector columns; column ``c`` is at ``u = (c - (n_det - 1) / 2) * pixel_size``.
    z_positions : float or array_like
        Heights of the detector rows' centres (phantom units), e.g.
        ``(np.arange(rows) - (rows - 1) / 2) * pixel_size``.
    pixel_size : float
        Detector pixel size (square pixels), phantom units (benchmark: ``2 / 512``).
    supersampling : int
        Sub-rays per pixel along each of ``u`` and ``z`` (benchmark: 2).
    max_elems : int
        Work-chunk size (number of sub-ray evaluations at once); bounds memory.

    Returns
    -------
    numpy.ndarray
        ``(z, angle, det)`` float32 line integrals in **pixel units** (physical line
        integral divided by ``pixel_size``), so that :func:`tomodenoise.recon.fbp` with
        unit voxels gives attenuation 1 in the foam material.
    """
    sph = _check_spheres(spheres)
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1 or ang.shape[0] < 1 or not np.all(np.isfinite(ang)):
        raise ValueError(f"angles must be a non-empty 1-D array of finite radians, got shape {ang.shape}")
    if isinstance(n_det, bool) or not isinstance(n_det, (int, np.integer)) or n_det < 1:
        raise ValueError(f"n_det must be a positive integer, got {n_det!r}")
    zs = np.atleast_1d(np.asarray(z_positions, dtype=np.float64))
    if zs.ndim != 1 or not np.all(np.isfinite(zs)):
        raise ValueError("z_positions must be a finite scalar or 1-D array")
    ps = float(pixel_size)
    if not (np.isfinite(ps) and ps > 0):
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    s = int(supersampling)
    if s < 1 or s != supersampling:
        raise ValueError(f"supersampling must be a positive integer, got {supersampling!r}")

    du = ps / s
    n_sub = int(n_det) * s
    sub = ((np.arange(s) + 0.5) / s - 0.5) * ps  # sub-ray offsets within a pixel
    u0 = -(n_det - 1) / 2.0 * ps + sub[0]
    u_sub = u0 + np.arange(n_sub) * du
    cyl = 2.0 * np.sqrt(np.maximum(CYLINDER_RADIUS**2 - u_sub**2, 0.0))
    cos, sin = np.cos(ang), np.sin(ang)
    out = np.empty((zs.shape[0], ang.shape[0], int(n_det)), dtype=np.float32)
    for iz, zc in enumerate(zs):
        acc = np.zeros((ang.shape[0], n_sub), dtype=np.float64)
        acc += s * cyl[None, :]  # s sub-planes in z, infinite cylinder
        for dz in sub:
            xc, yc, rho2, w = _circles_in_plane(sph, zc + dz)
            _add_circle_chords(acc, xc, yc, rho2, w, cos, sin, u0, du, int(max_elems))
        out[iz] = acc.reshape(ang.shape[0], int(n_det), s).sum(axis=2) / (s * s * ps)
    return out


def foam_slice(
    spheres: np.ndarray,
    n: int,
    z: float,
    pixel_size: float,
    supersampling: int = 4,
) -> np.ndarray:
    """Rasterise the phantom's cross-section at height ``z`` (for visual checks).

    Parameters
    ----------
    spheres : numpy.ndarray
        ``(n, 5)`` rows ``(x, y, z, r, density)``.
    n : int
        Image side; pixel ``[i, j]`` is centred at ``x = (j - (n - 1) / 2) * pixel_size``,
        ``y = ((n - 1) / 2 - i) * pixel_size`` (the frame of the FBP, +y up).
    z : float
        Height of the slice (phantom units).
    pixel_size : float
        Pixel size (phantom units).
    supersampling : int
        ``s x s`` point samples per pixel, averaged (area fraction); 1 = centres.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float32 attenuation per unit length: 1 in the material, the
        sphere's density inside a sphere, 0 outside the cylinder.
    """
    sph = _check_spheres(spheres)
    s = int(supersampling)
    if s < 1:
        raise ValueError(f"supersampling must be >= 1, got {supersampling}")
    ps = float(pixel_size)
    if not ps > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    m = n * s
    d = ps / s
    # fine grid: column k at x = x0 + k d, row k at y = y0 - k d
    x0 = -(n - 1) / 2.0 * ps + ((0.5 / s) - 0.5) * ps
    y0 = -x0
    coords = x0 + np.arange(m) * d
    img = ((coords[None, :] ** 2 + coords[:, None] ** 2) < CYLINDER_RADIUS**2).astype(np.float64)
    xc, yc, rho2, w = _circles_in_plane(sph, float(z))
    rho = np.sqrt(rho2)
    for cx, cy, r, r2, wt in zip(xc, yc, rho, rho2, w):
        j0 = max(int(np.floor((cx - r - x0) / d)), 0)
        j1 = min(int(np.ceil((cx + r - x0) / d)) + 1, m)
        i0 = max(int(np.floor((y0 - (cy + r)) / d)), 0)
        i1 = min(int(np.ceil((y0 - (cy - r)) / d)) + 1, m)
        if j0 >= j1 or i0 >= i1:
            continue
        xs = x0 + np.arange(j0, j1) * d - cx
        ys = y0 - np.arange(i0, i1) * d - cy
        img[i0:i1, j0:j1] += wt * ((xs[None, :] ** 2 + ys[:, None] ** 2) < r2)
    return img.reshape(n, s, n, s).mean(axis=(1, 3)).astype(np.float32)
