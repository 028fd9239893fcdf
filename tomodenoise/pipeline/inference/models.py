"""The network of a worker process, loaded once and reused by every shard it runs.

A Dask worker runs several shards one after another; loading the checkpoint (and moving
it to the GPU) for each would repeat the same work. :func:`cached_model` keeps the last
few networks of this process, keyed by the checkpoint's resolved path, its mtime and size
(a retrained ``best.pt`` is a new key) and the device. This is the one piece of process
state of the denoise stage; :func:`clear_model_cache` forgets it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["cached_model", "checkpoint_identity", "clear_model_cache", "model_loads"]

MAX_MODELS = 2
_lock = threading.Lock()  # cluster = threads: shards of one process share the cache
_cache: "OrderedDict[tuple, tuple[Any, dict]]" = OrderedDict()
_loads = {"n": 0}


def checkpoint_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Resolved path, mtime and size of a checkpoint (a clear error when it is missing)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}: train the network first (the train stage writes "
                                "model/best.pt)")
    st = p.stat()
    return {"path": str(p), "mtime_ns": st.st_mtime_ns, "size": st.st_size}


def cached_model(path: str | os.PathLike, device: str) -> tuple[Any, dict]:
    """``(model, meta)`` of :func:`tomodenoise.train.load_checkpoint`, loaded once per process."""
    ident = checkpoint_identity(path)
    key = (ident["path"], ident["mtime_ns"], ident["size"], str(device))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        from ...train import load_checkpoint

        entry = load_checkpoint(ident["path"], device=device)
        _loads["n"] += 1
        _cache[key] = entry
        while len(_cache) > MAX_MODELS:
            _cache.popitem(last=False)
        return entry


def model_loads() -> int:
    """How many times this process has loaded a checkpoint (recorded in each shard's markers)."""
    return _loads["n"]


def clear_model_cache() -> None:
    with _lock:
        _cache.clear()
