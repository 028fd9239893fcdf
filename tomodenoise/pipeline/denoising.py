"""The denoise stage: every (time step, channel, z-slab) with the K leave-one-out inputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore, z_slabs
from ..logs import show_progress
from .keys import key_for, stage_current
from .training import normalise_channels, uses_channel_normalisation

__all__ = ["denoise", "denoise_block", "device_for"]


def device_for(name: str) -> str:
    """``"auto"`` -> ``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``; other names as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def denoise_block(store: ScanStore, model, meta: dict, t: int, c: int, zs: slice, *, batch_size: int,
                  device: str, scales: dict | None = None) -> np.ndarray:
    """Denoise time step ``t``, channel ``c``, slices ``zs``: ``(z, y, x)``.

    Reads the splits of the block with the halo its neighbour channels need (slices, time
    steps or channels around it, clamped at the ends as in training) and denoises only the
    block's own images.
    """
    from ..denoise import denoise as run_denoise
    from ..train import checkpoint_neighbour_axis, checkpoint_neighbours

    rec = store.array("recon")
    _, nt, nc, nz = rec.shape[:4]
    nb, axis = checkpoint_neighbours(meta), checkpoint_neighbour_axis(meta)
    t_lo, t_hi, c_lo, c_hi, z_lo, z_hi = t, t + 1, c, c + 1, zs.start, zs.stop
    if nb and axis == "z":
        z_lo, z_hi = max(zs.start - nb, 0), min(zs.stop + nb, nz)
    elif nb and axis == "time":
        t_lo, t_hi = max(t - nb, 0), min(t + nb + 1, nt)
    elif nb and axis == "channel":
        c_lo, c_hi = max(c - nb, 0), min(c + nb + 1, nc)
    block = np.asarray(rec[:, t_lo:t_hi, c_lo:c_hi, z_lo:z_hi], dtype=np.float32)  # (split, t, c, z, y, x)
    if scales is not None:
        sub = {k: v[c_lo:c_hi] for k, v in scales.items()}
        normalise_channels(block, 2, sub)
    k, bt, bc, bz, ny, nx = block.shape
    shape = (bt, bc, bz)
    # the block's own images are contiguous in the stacked (t, c, z) order: one of t or c is 1 wide
    first = int(np.ravel_multi_index((t - t_lo, c - c_lo, zs.start - z_lo), shape))
    out = run_denoise(model, block.reshape(k, bt * bc * bz, ny, nx), strategy=meta["strategy"],
                      normalisation=meta["normalisation"], batch_size=batch_size, device=device, neighbours=nb,
                      volume_shape=shape, neighbour_axis=axis, slices=slice(first, first + zs.stop - zs.start))
    if scales is not None:
        normalise_channels(out[None], 0, {k_: [v[c]] for k_, v in scales.items()}, inverse=True)
    return out


def denoise(store: ScanStore, cfg: RunConfig, checkpoint: Path | None = None, progress: bool | None = None) -> None:
    """Denoise every slice of every time step and channel and write ``denoised``."""
    from tqdm.auto import tqdm

    from ..train import load_checkpoint

    progress = (cfg.train.progress if progress is None else progress) and show_progress()
    key = key_for(store, cfg, "denoise")
    if stage_current(store, "denoise", key):
        return
    store.clear_stage("denoise", "report")
    t0 = time.perf_counter()
    device = device_for(cfg.inference.device)
    model, meta = load_checkpoint(checkpoint or store.model_dir / "best.pt", device=device)
    ds = store.open()
    n = int(store.attrs["geometry"]["n_pixels"])
    store.init_array("denoised", {"y": n, "x": n})
    scales = store.attrs.get("channel_normalisation") if uses_channel_normalisation(store, cfg) else None
    work = [(t, c, zs) for t in range(ds.sizes["time"]) for c in range(ds.sizes["channel"])
            for zs in z_slabs(ds.sizes["z"], store.z_chunk)]
    for t, c, zs in tqdm(work, desc="denoise", unit="slab", disable=not progress):
        out = denoise_block(store, model, meta, t, c, zs, batch_size=cfg.inference.batch_size, device=device,
                            scales=scales)
        store.write_region("denoised", (t, c, zs), out)
    store.mark_stage("denoise", key=key, seconds=round(time.perf_counter() - t0, 3))
