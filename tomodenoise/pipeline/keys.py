"""Stage keys and where a scan's results live.

A stage is skipped only when it is complete in the store AND its key matches: the key hashes
the identity of the input and the parts of the configuration that change the stage's output,
chained to the key of the stage before it. A changed input or setting reruns that stage and
everything after it; a changed progress bar or device does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..io.store import ScanStore

__all__ = ["ORDER", "already_ingested", "input_identity", "invalidate_from", "key_for", "scan_id_for", "stage_current", "stage_keys", "store_for"]


def scan_id_for(cfg: RunConfig) -> str:
    """The output folder name: ``input.scan_id`` or the input's file stem, made file-name safe.

    Only letters, digits, ``.``, ``_`` and ``-`` are kept (others become ``_``), so a scan id
    can never climb out of ``output.root`` or name a hidden folder.
    """
    if cfg.input.scan_id:
        name = cfg.input.scan_id
    else:
        if not cfg.input.path:
            raise ValueError("input.path is not set")
        name = Path(cfg.input.path).name
        for suffix in (".zarr", ".nxs", ".h5", ".hdf5", ".hdf", ".npz", ".npy", ".tif", ".tiff"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "scan"


ORDER = ("ingest", "reconstruct", "train", "denoise", "report")  # the stages of a run, in order

_KEY_FIELDS: dict[str, dict[str, Any]] = {
    "ingest": {"input": {"exclude": {"scan_id"}}, "preprocess": {}, "time": {},
               "channels": {"include": {"select"}}, "recon": {"include": {"n_pixels", "z_chunk"}}},
    "reconstruct": {"splits": {}, "recon": {"exclude": {"use_gpu", "z_chunk"}}},
    "train": {"model": {}, "train": {"exclude": {"progress", "device", "resume", "rank_timeout"}}, "channels": {"include": {"normalise"}}},
    "denoise": {"inference": {"include": {"precision", "tile", "tile_overlap", "batch_size"}}},
}


def input_identity(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies the raw input: resolved path, and size and mtime of each file in it."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        return {"path": str(p), "missing": True}
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if f != p else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"path": str(p), "files": len(files), "digest": h.hexdigest()[:16]}


def stage_keys(cfg: RunConfig, identity: dict[str, Any] | None = None) -> dict[str, str]:
    """The key of each stage for this configuration (see ``_KEY_FIELDS``)."""
    identity = identity if identity is not None else input_identity(cfg.input.path or ".")
    keys: dict[str, str] = {}
    prev: Any = {k: v for k, v in identity.items() if k != "path"} | {"source": identity.get("path")}
    for stage, fields in _KEY_FIELDS.items():
        parts = {"prev": prev}
        for section, sel in fields.items():
            parts[section] = getattr(cfg, section).model_dump(mode="json", **sel)
            if section == "splits":  # splits.scheme (removed, had no effect) was hashed: old stores keep their keys
                parts[section]["scheme"] = "interlaced"
        prev = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        keys[stage] = prev
    return keys


def stage_current(store: ScanStore, stage: str, key: str) -> bool:
    """True when ``stage`` is complete in the store and was computed with ``key``."""
    return store.exists() and store.stage_done(stage) and store.stage_info(stage).get("key") == key


def invalidate_from(store: ScanStore, stage: str) -> None:
    """Forget ``stage`` and every stage after it (their outputs are stale)."""
    later = ORDER[ORDER.index(stage):]
    if store.exists():
        store.clear_stage(*later)
    if "train" in later and store.model_dir.exists():
        shutil.rmtree(store.model_dir)
    if "report" in later and store.report_dir.exists():
        keep = {"run.log", "slurm"}  # the run log and its SLURM jobs' logs are being written; the centre preview: ingest's
        if "ingest" not in later:
            keep |= {"preview_centre.png", "preview_centre.json"}
        for p in store.report_dir.iterdir():
            if p.name not in keep:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    if "ingest" in later and (store.root / "progress").exists():
        shutil.rmtree(store.root / "progress")


def store_for(cfg: RunConfig) -> ScanStore:
    root = Path(cfg.output.root).expanduser().resolve()
    return ScanStore(root / scan_id_for(cfg))


def key_for(store: ScanStore, cfg: RunConfig, stage: str) -> str:
    """The key of ``stage`` for ``cfg`` on the input this store was ingested from."""
    return stage_keys(cfg, store.attrs.get("source_identity") or {})[stage]


def already_ingested(cfg: RunConfig, scan: str | os.PathLike) -> bool:
    """True when the output store already holds this scan (started through the API or an event)."""
    c = cfg.model_copy(deep=True)
    c.input.path = str(scan)
    store = store_for(c)
    if not store.exists():
        return False
    try:
        held = store.attrs.get("source_identity", {})
    except Exception:  # a store being written: leave it to the next pass
        return True
    # the same file, unchanged since it was ingested (a rewritten scan is processed again)
    return held == input_identity(scan)
