"""Noise2Inverse inference: K leave-one-out inputs, K outputs averaged.

For every split ``j`` the network gets exactly what it saw as input in training
(``"X:1"``: the mean of the other K-1 splits; ``"1:X"``: split ``j``), and the K outputs are
averaged. The full-data reconstruction (the mean of all K splits) is never fed to the
network: it has a lower noise level than anything seen in training, and a network applied
outside its training distribution does not denoise reliably. That is why :func:`denoise`
takes the split reconstructions ``(split, z, y, x)`` and refuses anything else.
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
from tomodenoise.train.data import as_batch

__all__ = ["denoise", "denoise_checkpoint"]


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
    model = model.to(dev).eval()
    pairs = N2IPairs(splits, strategy, neighbours=neighbours, volume_shape=volume_shape,
                     neighbour_axis=neighbour_axis)  # the inputs exactly as in training
    zs = range(n_z)[slices] if slices is not None else range(n_z)
    out = np.zeros((len(zs), *splits.shape[2:]), dtype=np.float32)
    items = [(z, j) for z in zs for j in range(k)]
    with torch.inference_mode():
        for i in tqdm(range(0, len(items), batch_size), desc="denoise", unit="batch", disable=not progress):
            chunk = items[i : i + batch_size]
            x = as_batch([pairs.network_input(z, j) for z, j in chunk], normalisation)
            y = model(x.to(dev))
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
) -> np.ndarray:
    """:func:`denoise` with the network, strategy and normalisation stored in ``checkpoint``
    (``volume_shape``: ``(time, channel, z)`` of stacked volumes, as in training)."""
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
        volume_shape=volume_shape,
    )
