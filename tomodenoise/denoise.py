"""Noise2Inverse inference: K leave-one-out inputs, K outputs averaged.

For every split ``j`` the network gets exactly what it saw as input in training
(``"X:1"``: the mean of the other K-1 splits; ``"1:X"``: split ``j``), and the K outputs are
averaged. The full-data reconstruction (the mean of all K splits) is never fed to the
network: it has a lower noise level than anything seen in training, and a network applied
outside its training distribution does not denoise reliably. That is why :func:`denoise`
takes the split reconstructions ``(split, z, y, x)`` and refuses anything else.

Options of the forward pass (``inference`` in the run configuration): bf16 autocast
(``precision``; ``"auto"`` = bf16 only on a CUDA device that supports it, fp32 elsewhere),
channels-last memory format on CUDA, and tiles: a slice larger than ``tile`` is inferred in
overlapping square tiles blended by a smooth window (:func:`tile_weights`), so a large slice
fits in GPU memory without seams.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tomodenoise.train import (
    STRATEGIES,
    N2IPairs,
    checkpoint_neighbour_axis,
    checkpoint_neighbours,
    denormalise,
    load_checkpoint,
    resolve_device,
)
from tomodenoise.device import resolve_precision
from tomodenoise.train.data import as_batch

__all__ = ["denoise", "denoise_checkpoint", "forward", "resolve_precision", "tile_starts", "tile_weights"]

def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles of width ``min(tile, n)`` that cover ``0..n``: a step of
    ``tile - overlap``, the last tile flush with the end (it may overlap its neighbour more)."""
    if tile >= n:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"inference.tile_overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    starts = list(range(0, n - tile, tile - overlap))
    return starts + [n - tile]


def _ramp(width: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """1-D window of a tile: 1 inside; over the ``overlap`` pixels at an inner edge, 0 on the
    outer quarter, a raised cosine from 0 to 1 over the middle half, 1 on the inner quarter."""
    w = np.ones(width, np.float64)
    if overlap <= 0:
        return w
    zero = overlap // 4
    rise = max(1, overlap - 2 * zero)
    d = np.arange(width, dtype=np.float64)  # distance from the edge
    ramp = np.clip((d - zero + 0.5) / rise, 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    if left:
        w = np.minimum(w, ramp)
    if right:
        w = np.minimum(w, ramp[::-1])
    return w


def tile_weights(n: int, tile: int, overlap: int) -> list[tuple[int, np.ndarray]]:
    """``(start, window)`` of each tile along an axis of ``n`` pixels.

    A window is 1 except near an edge that another tile overlaps: there it is 0 over the
    outermost quarter of the overlap (where a network's output is spoilt by the tile's
    border), rises smoothly (raised cosine) over the middle half, and is 1 on the innermost
    quarter. Outputs are blended as ``sum(w * y) / sum(w)``, so with an overlap of at least
    4x the network's receptive-field radius the blend equals the whole-slice output (to
    float rounding), and otherwise the tiles fade into each other without seams.
    """
    starts = tile_starts(n, tile, overlap)
    width = min(tile, n)
    return [(s, _ramp(width, overlap, left=i > 0, right=i < len(starts) - 1)) for i, s in enumerate(starts)]


def forward(model: nn.Module, x: torch.Tensor, *, precision: str = "fp32", tile: int | None = None,
            tile_overlap: int = 32, channels_last: bool = False) -> torch.Tensor:
    """``model(x)`` for a ``(batch, channels, y, x)`` batch on the model's device, float32.

    ``precision="bf16"`` runs under bf16 autocast; ``tile``: slices with a side larger than
    ``tile`` are inferred in overlapping square tiles blended by :func:`tile_weights`;
    ``channels_last``: the input in channels-last memory format (the model converted by the
    caller).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16 here (resolve 'auto' first), got {precision!r}")

    def run(inp: torch.Tensor) -> torch.Tensor:
        if channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        if precision == "bf16":
            with torch.autocast(device_type=inp.device.type, dtype=torch.bfloat16):
                return model(inp).float()
        return model(inp).float()

    ny, nx = x.shape[-2:]
    if tile is None or (ny <= tile and nx <= tile):
        return run(x)
    wy, wx = tile_weights(ny, tile, tile_overlap), tile_weights(nx, tile, tile_overlap)
    out = weight = None
    for y0, win_y in wy:
        for x0, win_x in wx:
            sy, sx = slice(y0, y0 + len(win_y)), slice(x0, x0 + len(win_x))
            y = run(x[..., sy, sx])
            w = torch.from_numpy(np.outer(win_y, win_x).astype(np.float32)).to(y.device)
            if out is None:
                out = y.new_zeros((*y.shape[:2], ny, nx))
                weight = y.new_zeros((ny, nx))
            out[..., sy, sx] += y * w
            weight[sy, sx] += w
    return out / weight


def _check(recon_splits: Any) -> np.ndarray:
    arr = np.asarray(recon_splits, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise ValueError(
            "denoise needs split reconstructions (split, z, y, x) with K >= 2 splits, got shape "
            f"{arr.shape}; never pass the full-data reconstruction: the network was trained on split "
            "inputs and must see the same noise level at inference"
        )
    return arr


def denoise(
    model: nn.Module,
    recon_splits: Any,
    *,
    strategy: str,
    normalisation: dict[str, float] | None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = False,
    neighbours: int = 0,
    slices: slice | None = None,
    volume_shape: tuple[int, int, int] | None = None,
    neighbour_axis: str = "z",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int = 32,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Denoise split reconstructions with a Noise2Inverse-trained network.

    Parameters
    ----------
    model : torch.nn.Module
        Network mapping ``(batch, 1, y, x) -> (batch, 1, y, x)`` (moved to ``device``, eval mode).
    recon_splits : array_like, shape (split, z, y, x)
        The K >= 2 split reconstructions the network was trained on (or of the same kind).
        Not the full-data reconstruction: a ``(z, y, x)`` array or a single split is rejected.
    strategy : {"X:1", "1:X"}
        The training strategy: ``"X:1"`` feeds the mean of the other K-1 splits,
        ``"1:X"`` feeds split ``j``.
    normalisation : dict or None
        ``{"mean", "std"}`` stored in the checkpoint; applied to inputs and inverted on outputs.
    batch_size : int
        Slices per forward pass.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"auto"``.
    progress : bool
        Show a tqdm progress bar over slice batches.
    neighbours : int
        Neighbour slices on each side fed as extra input channels (as in training: the
        checkpoint's ``train_config``).
    slices : slice, optional
        The z slices to denoise (default all); the others only feed the neighbour channels,
        so a slab read with a halo of ``neighbours`` slices is denoised without waste.
    volume_shape, neighbour_axis
        ``(time, channel, z)`` of stacked volumes and the neighbours' axis, as in training
        (:class:`~tomodenoise.train.N2IPairs`); ``slices`` then indexes the stacked images.
    precision : {"fp32", "bf16", "auto"}
        Autocast precision of the forward pass; ``"auto"``: bf16 on a CUDA device that supports
        it, fp32 elsewhere (the default here is fp32: bitwise what it always was).
    tile, tile_overlap : int
        Slices with a side larger than ``tile`` are inferred in square tiles overlapping by
        ``tile_overlap`` pixels, blended smoothly (:func:`tile_weights`); ``None``: whole slices.
    channels_last : bool, optional
        Channels-last memory format for the model and its inputs; default: on CUDA only.

    Returns
    -------
    ndarray, shape (z, y, x), float32
        The mean over j of ``model(input_j)``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    splits = _check(recon_splits)
    k, n_z = splits.shape[:2]
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    if tile is not None:
        tile_starts(max(tile + 1, 2), tile, tile_overlap)  # a bad overlap is an error before any work
    if channels_last is None:
        channels_last = dev.type == "cuda"
    model = model.to(dev).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    pairs = N2IPairs(splits, strategy, neighbours=neighbours, volume_shape=volume_shape,
                     neighbour_axis=neighbour_axis)  # the inputs exactly as in training
    zs = range(n_z)[slices] if slices is not None else range(n_z)
    out = np.zeros((len(zs), *splits.shape[2:]), dtype=np.float32)
    items = [(z, j) for z in zs for j in range(k)]
    with torch.inference_mode():
        for i in tqdm(range(0, len(items), batch_size), desc="denoise", unit="batch", disable=not progress):
            chunk = items[i : i + batch_size]
            x = as_batch([pairs.network_input(z, j) for z, j in chunk], normalisation)
            y = forward(model, x.to(dev), precision=precision, tile=tile, tile_overlap=tile_overlap,
                        channels_last=channels_last)
            y = denormalise(y[:, 0].float().cpu().numpy(), normalisation)
            for (z, _), yz in zip(chunk, y):
                out[z - zs.start] += yz
    out /= np.float32(k)
    return out


def denoise_checkpoint(
    checkpoint: str | os.PathLike,
    recon_splits: Any,
    *,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    progress: bool = False,
    volume_shape: tuple[int, int, int] | None = None,
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int = 32,
) -> np.ndarray:
    """:func:`denoise` with the network, strategy and normalisation stored in ``checkpoint``
    (``volume_shape``: ``(time, channel, z)`` of stacked volumes, as in training; ``precision``,
    ``tile``, ``tile_overlap``: the forward pass, as in :func:`denoise`)."""
    splits = _check(recon_splits)
    model, meta = load_checkpoint(checkpoint, device=resolve_device(device))
    if splits.shape[0] != meta["k"]:
        # Different K changes the input noise level of X:1 (and of the 1:X target); allowed but unusual.
        import warnings

        warnings.warn(
            f"checkpoint was trained with k={meta['k']} splits, denoising with k={splits.shape[0]}",
            stacklevel=2,
        )
    return denoise(
        model, splits, strategy=meta["strategy"], normalisation=meta["normalisation"],
        batch_size=batch_size, device=resolve_device(device), progress=progress,
        neighbours=checkpoint_neighbours(meta), neighbour_axis=checkpoint_neighbour_axis(meta),
        volume_shape=volume_shape, precision=precision, tile=tile, tile_overlap=tile_overlap,
    )
