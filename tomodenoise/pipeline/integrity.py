"""What the store holds, checked: a checksum per written chunk, and the chunks that fail it.

A chunked stage records, in each chunk's completion marker (:class:`~.markers.Markers`), the
CRC-32 of the chunk's float32 bytes as they were written. A stage that a rerun would skip is
verified first (:meth:`tomodenoise.pipeline.stages.Chunked.plan`): a chunk whose marker is gone,
whose bytes cannot be read (a truncated or corrupted file) or whose checksum differs (a deleted
chunk reads as NaN) is computed again; only then is the stage skipped.
``tomodenoise verify STORE`` runs the same check on demand (:func:`tomodenoise.pipeline.verify_store`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.store import ScanStore
from .markers import Markers

__all__ = ["Damage", "checksum", "damaged_chunks", "readable_checkpoint"]


@dataclass(frozen=True)
class Damage:
    """One damaged chunk of a stage: the chunk, and why."""

    chunk: Any
    why: str

    def __str__(self) -> str:
        return f"{self.chunk.label} ({self.why})"


def checksum(data: np.ndarray) -> str:
    """``crc32:<8 hex digits>`` of ``data`` as contiguous float32 bytes."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(data, dtype=np.float32).tobytes()):08x}"


def damaged_chunks(store: ScanStore, markers: Markers, chunks: list[Any], array: str) -> list[Damage]:
    """The chunks of ``array`` (``recon`` or ``denoised``) that are not as they were written.

    Markers written before checksums were recorded are checked for being readable and finite."""
    records = markers.record_map()
    try:
        arr = store.array(array)
    except Exception as exc:  # the array itself is gone or unreadable
        return [Damage(c, f"{array} unreadable: {type(exc).__name__}") for c in chunks]
    out = []
    for c in chunks:
        rec = records.get(c.marker)
        if rec is None:
            out.append(Damage(c, "not written"))
            continue
        try:
            data = np.asarray(arr[c.region], dtype=np.float32)
        except Exception as exc:  # a truncated or corrupted chunk file: the codec fails
            out.append(Damage(c, f"unreadable: {type(exc).__name__}"))
            continue
        if "crc" in rec:
            if checksum(data) != rec["crc"]:
                out.append(Damage(c, "bytes changed since written"))
        elif not np.isfinite(data).all():
            out.append(Damage(c, "missing values"))
    return out


def readable_checkpoint(path: Path) -> str | None:
    """None when the checkpoint at ``path`` loads; else why not."""
    if not path.is_file():
        return "missing"
    try:
        from ..train.checkpoint import load_raw

        load_raw(path)
    except Exception as exc:
        return f"unreadable: {type(exc).__name__}"
    return None

