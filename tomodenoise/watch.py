"""Finding new scans and claiming each exactly once (the new-scan watcher's core; no Prefect).

A scan is *new* when no claim exists for its identity (resolved path, size, modification
time). Claims are files created with ``O_CREAT | O_EXCL`` under ``<output.root>/.claims/``:
the file system lets exactly one of two overlapping watchers create a given claim, so a
scan is never started twice, and a scan rewritten later (new identity) is started again.
A scan still being written (modified less than ``min_age_s`` ago) is left for a later pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

DEFAULT_PATTERNS = ("*.h5", "*.hdf5", "*.hdf", "*.nxs")


@dataclass(frozen=True)
class Claim:
    scan: Path
    id: str
    file: Path

    def release(self) -> None:
        """Give the scan back (the run could not be started): a later pass claims it again."""
        self.file.unlink(missing_ok=True)

    def record(self, **info: object) -> None:
        """Add what was started for this scan (e.g. the flow run id) to the claim file."""
        data = json.loads(self.file.read_text() or "{}")
        data.update(info)
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.file)


def scan_identity(path: str | os.PathLike) -> str:
    """A short id of the scan's path, size and modification time."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha256(f"{p}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]


def find_scans(roots: Iterable[str | os.PathLike], patterns: Iterable[str] = DEFAULT_PATTERNS,
               min_age_s: float = 60.0, now: float | None = None) -> list[Path]:
    """Scan files under ``roots`` (recursively) matching ``patterns``, settled for ``min_age_s``."""
    now = time.time() if now is None else now
    found: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"input root {root} is not a directory")
        for pattern in patterns:
            for p in root.rglob(pattern):
                if p.is_file() and not p.name.startswith(".") and now - p.stat().st_mtime >= min_age_s:
                    found.add(p.resolve())
    return sorted(found)


def claim(scan: str | os.PathLike, claims_dir: str | os.PathLike) -> Claim | None:
    """Claim ``scan`` for processing; None when it is already claimed (by anyone, ever)."""
    scan = Path(scan).resolve()
    cid = scan_identity(scan)
    d = Path(claims_dir)
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{cid}.json"
    try:
        fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as fh:
        json.dump({"scan": str(scan), "claimed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "host": os.uname().nodename, "pid": os.getpid()}, fh)
    return Claim(scan, cid, f)


def claims_dir_for(output_root: str | os.PathLike) -> Path:
    return Path(output_root).expanduser().resolve() / ".claims"
