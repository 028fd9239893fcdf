"""The denoise stage: every (time step, channel, z-slab) with the K leave-one-out inputs.

The work is cut into shards of whole Zarr chunks (:mod:`.inference`); the flow runs them in
parallel on the Dask workers, :func:`denoise` runs the very same shards one after another
in this process, so both write the same bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import RunConfig
from ..io.store import ScanStore
from ..logs import bars_wanted, show_progress
from .inference import denoise_block, denoise_current, denoise_shard, device_for, finish_denoise, prepare_denoise

__all__ = ["denoise", "denoise_block", "device_for"]


def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None, progress: bool | None = None) -> None:
    """Denoise every slice of every time step and channel and write ``denoised``.

    Resumes: chunks written by an interrupted run with the same settings are not computed again.
    """
    from tqdm.auto import tqdm

    if denoise_current(store, cfg):
        return
    progress = (cfg.train.progress if progress is None else progress) and show_progress()
    t0 = time.perf_counter()
    shards = prepare_denoise(store, cfg, checkpoint)
    with tqdm(total=sum(len(s.chunks) for s in shards), desc="denoise", unit="chunk",
              disable=not (progress and bars_wanted())) as bar:
        for shard in shards:
            denoise_shard(store, cfg, shard, checkpoint)
            bar.update(len(shard.chunks))
    finish_denoise(store, cfg, time.perf_counter() - t0)
