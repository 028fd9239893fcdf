"""The denoise stage in this process: every (time step, channel, z-slab) with the K leave-one-out inputs.

The work is cut into shards of whole Zarr chunks (:mod:`.inference`); the flow runs them in
parallel on the Dask workers, :func:`denoise` runs the very same shards one after another
in this process (:data:`~.stages.DENOISE` on the sequential executor), so both write the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..io.store import ScanStore
from .inference import denoise_block, device_for

__all__ = ["denoise", "denoise_block", "device_for"]


def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None, progress: bool | None = None) -> None:
    """Denoise every slice of every time step and channel and write ``denoised``.

    Resumes: chunks written by an interrupted run with the same settings are not computed again.
    """
    from .executor import Sequential, run_stage
    from .stages import DENOISE, Context

    run_stage(DENOISE, store, cfg, Sequential(progress=True if progress is None else progress),
              Context(checkpoint=str(checkpoint) if checkpoint else None))
