"""One block of inference: a time step, a channel and a z-slab of the split reconstructions."""

from __future__ import annotations

import numpy as np

from ...device import resolve_device
from ...io.store import ScanStore
from ..training import normalise_channels

__all__ = ["denoise_block", "device_for"]


def device_for(name: str) -> str:
    """The device ``inference.device`` names, as a string (``"cuda"``, ``"cpu"``, ``"cuda:1"``):
    :func:`tomodenoise.device.resolve_device`, so ``"auto"`` is CUDA when PyTorch sees a GPU,
    else the CPU, and a CUDA device without CUDA is a :class:`ValueError`."""
    return str(resolve_device(name))


def denoise_block(store: ScanStore, model, meta: dict, t: int, c: int, zs: slice, *, batch_size: int,
                  device: str, scales: dict | None = None, precision: str = "fp32", tile: int | None = None,
                  tile_overlap: int = 32) -> np.ndarray:
    """Denoise time step ``t``, channel ``c``, slices ``zs``: ``(z, y, x)``.

    Reads the splits of the block with the halo its neighbour channels need (slices, time
    steps or channels around it, clamped at the ends as in training) and denoises only the
    block's own images. ``precision``, ``tile`` and ``tile_overlap`` are those of
    :func:`tomodenoise.denoise.denoise`.
    """
    from ...denoise import denoise as run_denoise
    from ...train import checkpoint_neighbour_axis, checkpoint_neighbours

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
                      volume_shape=shape, neighbour_axis=axis, slices=slice(first, first + zs.stop - zs.start),
                      precision=precision, tile=tile, tile_overlap=tile_overlap)
    if scales is not None:
        normalise_channels(out[None], 0, {k_: [v[c]] for k_, v in scales.items()}, inverse=True)
    return out
