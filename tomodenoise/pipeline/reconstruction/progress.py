"""Chunk completion markers: resume is per chunk, whatever the task size.

One marker file per written chunk under ``progress/reconstruct-<key>/``, created
(atomically) only after the chunk's bytes are in the store. Markers of a key survive a
killed run, so running again computes only the chunks without one; a new key (other input
or settings) starts from no markers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...io.store import ScanStore
from .chunks import Chunk

__all__ = ["done_markers", "marker_name", "progress_dir", "write_marker"]


def progress_dir(store: ScanStore, key: str) -> Path:
    return store.root / "progress" / f"reconstruct-{key}"


def marker_name(chunk: Chunk) -> str:
    return f"s{chunk.split}-t{chunk.time}-c{chunk.channel}-z{chunk.z_start}.done"


def done_markers(pdir: Path) -> set[str]:
    """Names of the completion markers in ``pdir``."""
    return {p.name for p in pdir.glob("*.done")}


def write_marker(pdir: Path, chunk: Chunk, device: str) -> None:
    """Mark ``chunk`` written (call only once its bytes are in the store)."""
    name = marker_name(chunk)
    tmp = pdir / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"z": [chunk.z_start, chunk.z_stop], "pid": os.getpid(), "device": device}))
    os.replace(tmp, pdir / name)
