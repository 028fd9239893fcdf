"""The shape of a scan's store, known before the store exists.

The chunked stages plan their work from these sizes alone, so ``tomodenoise check`` can plan
every stage of a run from the scan (no store written), and a run plans from its store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import RunConfig
from ..io.store import ScanStore

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """Sizes of the sinogram ``(time, channel, z, angle, det)``, the image side and the z-chunk."""

    time: int
    channel: int
    z: int
    angle: int
    det: int
    n_pixels: int
    z_chunk: int

    @classmethod
    def of(cls, where: "ScanStore | Layout") -> "Layout":
        """``where`` itself when it is a layout, else the layout of that store."""
        return where if isinstance(where, Layout) else cls.of_store(where)

    @classmethod
    def of_store(cls, store: ScanStore) -> "Layout":
        """From an ingested store's metadata (no data read)."""
        t, c, z, a, d = (int(s) for s in store.array("sinogram").shape)
        return cls(t, c, z, a, d, int(store.attrs["geometry"]["n_pixels"]), store.z_chunk)

    @classmethod
    def of_sinograms(cls, sinogram: Any, cfg: RunConfig) -> "Layout":
        """What the ingest stage would write for ``sinogram`` (time, channel, z, angle, det)."""
        t, c, z, a, d = (int(s) for s in sinogram.shape)
        return cls(t, c, z, a, d, int(cfg.recon.n_pixels or d), int(cfg.recon.z_chunk))

    @property
    def z_width(self) -> int:
        """Slices in one z-chunk (the last one may be narrower)."""
        return min(self.z_chunk, self.z)
