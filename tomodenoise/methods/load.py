"""A scan file (and what is known about it) as a :class:`~tomodenoise.methods.base.Scan`.

The same readers and preprocessing as ``tomodenoise run`` (flat/dark, -log, centre of
rotation), static scans only. The clean reference is ``--reference FILE`` (a ``(z, y, x)``
``.npy``), or the ``<stem>_clean.npy`` that ``tomodenoise simulate foam`` writes beside its
scan; a repeat scan of the same object (``--second``) enables Noise2Noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import RunConfig
from .base import Scan

__all__ = ["load_scan", "reference_beside"]


def reference_beside(path: str | Path) -> Path | None:
    """``<stem>_clean.npy`` next to the scan when it exists (written by ``tomodenoise simulate``)."""
    p = Path(path)
    cand = p.with_name(p.stem + "_clean.npy")
    return cand if cand.is_file() else None


def _sinogram(path: str | Path, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, float]:
    from ..io import read_scan
    from ..pipeline.modalities import build_sinograms

    raw = read_scan(path, format=cfg.input.format, angles_file=cfg.input.angles_file,
                    angles_unit=cfg.input.angles_unit, slices=cfg.input.slices,
                    flats=cfg.input.flats, darks=cfg.input.darks, entry=cfg.input.entry)
    sg = build_sinograms(raw, cfg)
    if sg.modality != "static":
        raise ValueError(f"{path} is a {sg.modality} scan: the comparison takes static scans (one volume)")
    return np.asarray(sg.sinogram[0, 0], dtype=np.float32), np.asarray(sg.angles, dtype=np.float64), float(sg.center)


def load_scan(path: str | Path, *, reference: str | Path | None = None, second: str | Path | None = None,
              slices: tuple[int, int] | None = None, cfg: RunConfig | None = None) -> Scan:
    """Read, preprocess and wrap a scan; ``slices``: detector rows ``[start, stop)``."""
    cfg = (cfg or RunConfig()).model_copy(deep=True)
    if slices is not None:
        cfg.input.slices = tuple(slices)
    sino, angles, center = _sinogram(path, cfg)
    clean = None
    ref = Path(reference) if reference else reference_beside(path)
    if ref is not None:
        clean = np.load(ref).astype(np.float32)
        if clean.ndim == 2:
            clean = clean[None]
        if slices is not None and clean.shape[0] != sino.shape[0]:
            clean = clean[slices[0]:slices[1]]
        z, w = sino.shape[0], sino.shape[2]
        if clean.shape != (z, w, w):
            raise ValueError(f"reference {ref} has shape {clean.shape}; the scan's volume is {(z, w, w)} (z, y, x)")
    rep = None
    if second:
        s2, a2, _ = _sinogram(second, cfg)
        if s2.shape != sino.shape or not np.allclose(a2, angles):
            raise ValueError(f"repeat scan {second} has shape {s2.shape} or other angles than {path} {sino.shape}")
        rep = Scan(sino=s2, angles=a2, center=center, clean=clean, name=Path(second).stem)
    return Scan(sino=sino, angles=angles, center=center, clean=clean, second=rep, name=Path(path).stem)
