"""Simulated raw scans in Data Exchange format (``tomodenoise simulate foam``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.dxchange import write_dxchange
from ..recon import fbp
from .foam import generate_foam, load_spheres, project_foam
from .noise import photon_counts


def simulate_foam_scan(
    out: str | Path,
    *,
    size: int = 256,
    n_angles: int = 512,
    n_slices: int = 8,
    i0: float = 100.0,
    seed: int = 0,
    n_spheres: int = 2000,
    phantom: str | Path | None = None,
    absorption: float = 2.76,
    n_flats: int = 4,
) -> dict[str, Path]:
    """Write a noisy foam scan (raw counts, flats = I0, darks = 0) and its clean FBP.

    The slice is ``size`` x ``size`` pixels over the unit cylinder's diameter (pixel size
    ``2 / size``) and so is the detector width, so the reconstruction grid equals the
    detector width. ``n_slices`` detector rows are taken around the middle of a
    ``size``-row detector. Noise: the foam benchmark's Poisson model at ``i0`` photons.

    Returns
    -------
    dict
        ``scan``: the ``.h5`` file; ``reference``: ``<stem>_clean.npy``, the FBP of the
        clean projections with all angles, ``(z, y, x)``, on the scale of the
        reconstruction of the raw counts (attenuation x ``absorption`` per pixel), for
        PSNR/SSIM.
    """
    out = Path(out)
    if n_slices < 1 or n_slices > size:
        raise ValueError(f"n_slices must be in 1..{size}, got {n_slices}")
    out.parent.mkdir(parents=True, exist_ok=True)
    pixel_size = 2.0 / size
    spheres = load_spheres(phantom) if phantom else generate_foam(seed, n_spheres=n_spheres)
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    rows = size // 2 - n_slices // 2 + np.arange(n_slices)
    z = (rows - (size - 1) / 2.0) * pixel_size
    clean = project_foam(spheres, angles, size, z, pixel_size, supersampling=2)  # (z, angle, det)
    rng = np.random.default_rng(seed)
    counts = photon_counts(clean, i0, absorption, rng, pixel_size=pixel_size)
    projections = np.ascontiguousarray(counts.transpose(1, 0, 2))  # (angle, z, det)
    flats = np.full((n_flats, n_slices, size), i0, dtype=np.float32)
    darks = np.zeros((n_flats, n_slices, size), dtype=np.float32)
    write_dxchange(out, projections, flats, darks, angles)
    reference = out.with_name(out.stem + "_clean.npy")
    # -log(counts / I0) = absorption * pixel_size * (line integral in pixels): the clean FBP
    # on the scale the pipeline reconstructs the raw counts at.
    np.save(reference, fbp(clean * np.float32(absorption * pixel_size), angles, n_pixels=size))
    return {"scan": out, "reference": reference}
