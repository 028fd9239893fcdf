"""Completion markers: the one record of which chunks of a stage are in the store.

A chunked stage (reconstruct, denoise) writes one marker file per chunk under
``progress/<stage>-<key>/``, created atomically only after the chunk's bytes are in the
store. Markers of a key survive a killed run, so running again computes only the chunks
without one; a new key (other input or settings) starts from no markers. A stage whose
bytes depend on more than its key (the denoise stage: the checkpoint and the inference
settings) records those in ``settings.json`` beside the markers; other settings forget them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..io.store import ScanStore

__all__ = ["Markers"]


class Markers:
    """The completion markers of one stage and key in a store."""

    def __init__(self, store: ScanStore, stage: str, key: str):
        self.stage = stage
        self.path: Path = store.root / "progress" / f"{stage}-{key}"

    def names(self) -> set[str]:
        """Names of the markers written so far (none when the folder does not exist)."""
        return {p.name for p in self.path.glob("*.done")} if self.path.is_dir() else set()

    def records(self) -> list[dict[str, Any]]:
        """What each marker recorded (z range, process, device, checksum...)."""
        return list(self.record_map().values())

    def record_map(self) -> dict[str, dict[str, Any]]:
        """Marker name -> what it recorded (a marker that cannot be read counts as not written)."""
        out = {}
        for p in sorted(self.path.glob("*.done")):
            try:
                out[p.name] = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
        return out

    def forget(self, names: list[str]) -> None:
        """Remove these markers: their chunks are computed again."""
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    def settings_match(self, settings: dict[str, Any] | None) -> bool:
        """True when the folder exists and was started with ``settings`` (None: with none recorded)."""
        if not self.path.is_dir():
            return False
        sfile = self.path / "settings.json"
        if settings is None:
            return True
        return sfile.exists() and json.loads(sfile.read_text()) == settings

    def fresh(self, settings: dict[str, Any] | None = None) -> bool:
        """Start the markers of this key unless they exist with ``settings``; True when started anew.

        Markers of other keys of the stage (or of other settings) are forgotten."""
        if self.settings_match(settings):
            return False
        if self.path.parent.is_dir():
            for old in self.path.parent.glob(f"{self.stage}-*"):
                shutil.rmtree(old, ignore_errors=True)
        self.path.mkdir(parents=True)
        if settings is not None:
            self._atomic("settings.json", settings)
        return True

    def write(self, name: str, **record: Any) -> None:
        """Mark chunk ``name`` written (call only once its bytes are in the store)."""
        self._atomic(name, {**record, "pid": os.getpid()})

    def _atomic(self, name: str, content: dict[str, Any]) -> None:
        tmp = self.path / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(content))
        os.replace(tmp, self.path / name)
