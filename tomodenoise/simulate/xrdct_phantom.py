"""A simulated XRD-CT scan (``tomodenoise simulate xrdct``): phases x powder patterns.

``volume[c, y, x] = sum_m map_m[y, x] * pattern_m[c]``: a few crystalline phases, each with a
spatial map (particles in a circular sample) and a powder diffraction pattern over the
channels (q bins). One sinogram per channel (ASTRA forward projection, pixel units), angles
over a full turn in shuffled order (as pencil-beam scans often come), Poisson noise at a
count level set by the brightest sinogram value, so weak channels are noisier.

Ingredients: nDTomo's ``Patterns.h5`` (Al, Cu, Fe, Pt, Zn patterns with their q axis) and a
segmented particle map ``catalyst_particles_*.tif`` (a folder such as
``../shared/data/xrdct_ingredients``; GPL-3.0 data files, read at run time, never copied), or
built-in synthetic phases (Gaussian peaks over a weak background, random disc particles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["builtin_phases", "simulate_xrdct_scan", "xrdct_volume"]


def builtin_phases(size: int, rng: np.random.Generator, n_phases: int = 3, n_bins: int = 128
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Synthetic phases: ``(maps (m, y, x), patterns (m, c), q (c,), names)``.

    Each pattern has 3-5 Gaussian peaks with heights spanning 1..100 on a weak smooth
    background, over q = 1..6 1/angstrom; each map holds a few discs inside the sample circle.
    """
    q = np.linspace(1.0, 6.0, n_bins)
    patterns = np.zeros((n_phases, n_bins))
    for m in range(n_phases):
        for _ in range(int(rng.integers(3, 6))):
            centre, width = rng.uniform(1.3, 5.7), rng.uniform(0.02, 0.06)
            patterns[m] += 10 ** rng.uniform(0, 2) * np.exp(-0.5 * ((q - centre) / width) ** 2)
        patterns[m] += 0.5 * np.exp(-q / 2.0)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    inside = np.hypot(yy, xx) < 0.45 * size
    maps = np.zeros((n_phases, size, size))
    for m in range(n_phases):
        for _ in range(int(rng.integers(3, 7))):
            r = rng.uniform(0.04, 0.12) * size
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.45 * size - r)
            cy, cx = rad * np.sin(ang), rad * np.cos(ang)
            maps[m] += (np.hypot(yy - cy, xx - cx) < r) * rng.uniform(0.5, 1.0)
    maps[0] += 0.1 * inside  # a weak matrix phase fills the sample
    return maps, patterns, q, [f"phase{m}" for m in range(n_phases)]


def _ingredient_phases(folder: Path, size: int, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    import h5py
    import tifffile

    with h5py.File(folder / "Patterns.h5", "r") as f:
        names = [k for k in f if k not in ("q", "tth")]
        patterns = np.stack([np.asarray(f[k][()], dtype=np.float64) for k in names])
        q = np.asarray(f["q"][()], dtype=np.float64)
    tifs = sorted(folder.glob("catalyst_particles_*.tif"))
    if not tifs:
        raise FileNotFoundError(f"{folder}: no catalyst_particles_*.tif particle map")
    labels = tifffile.imread(tifs[0])
    idx = (np.arange(size) * labels.shape[0] / size).astype(int)  # nearest-neighbour resize
    labels = labels[np.ix_(idx, (np.arange(size) * labels.shape[1] / size).astype(int))]
    phase_of = rng.integers(0, len(names), size=int(labels.max()) + 1)
    maps = np.zeros((len(names), size, size))
    for lab in np.unique(labels):
        if lab == 0:
            continue
        maps[phase_of[lab]][labels == lab] = 1.0
    return maps, patterns / patterns.max(axis=1, keepdims=True) * 100.0, q, names


def xrdct_volume(maps: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """``(c, y, x)`` = sum over phases of map times pattern."""
    return np.einsum("myx,mc->cyx", maps, patterns).astype(np.float32)


def _bin(patterns: np.ndarray, q: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= q.size:
        return patterns, q
    edges = np.linspace(0, q.size, n + 1).round().astype(int)
    return (np.stack([patterns[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1),
            np.array([q[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]))


def simulate_xrdct_scan(out: str | Path, *, size: int = 64, n_slices: int = 1, n_angles: int = 90,
                        full_turn: bool = True, shuffle_angles: bool = True, counts: float = 100.0,
                        n_channels: int | None = None, ingredients: str | Path | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """Write a noisy XRD-CT scan and its truth.

    Returns
    -------
    dict
        ``scan``: the ``.h5`` file (:func:`tomodenoise.io.diffraction.write_xrdct`);
        ``reference``: ``<stem>_truth.npy`` ``(1, channel, z, y, x)`` float32, on the scale the
        pipeline's FBP reconstructs the sinograms at; ``channels``: the q values; ``phases``.
    """
    from ..io.diffraction import write_xrdct
    from ..recon import forward_project

    if counts <= 0:
        raise ValueError(f"counts must be > 0, got {counts}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    if ingredients is not None:
        maps, patterns, q, names = _ingredient_phases(Path(ingredients), size, rng)
    else:
        maps, patterns, q, names = builtin_phases(size, rng)
    patterns, q = _bin(patterns, q, n_channels)
    vols = []
    for z in range(n_slices):  # each slice: the maps turned by a different angle
        turned = np.stack([np.rot90(m, k=z % 4) for m in maps]) if z else maps
        vols.append(xrdct_volume(turned, patterns))
    truth = np.stack(vols, axis=1)  # (c, z, y, x)
    angles = np.linspace(0.0, 2 * np.pi if full_turn else np.pi, n_angles, endpoint=False)
    if shuffle_angles:
        angles = rng.permutation(angles)
    c = truth.shape[0]
    sino = np.stack([forward_project(truth[i], angles, size, use_gpu="no") for i in range(c)])  # (c, z, angle, det)
    peak = float(sino.max())
    noisy = rng.poisson(np.clip(sino, 0, None) / peak * counts).astype(np.float32) * np.float32(peak / counts)
    write_xrdct(out, noisy, np.rad2deg(angles), q)
    reference = out.with_name(out.stem + "_truth.npy")
    np.save(reference, truth[None].astype(np.float32))
    return {"scan": out, "reference": reference, "channels": q, "phases": names}
