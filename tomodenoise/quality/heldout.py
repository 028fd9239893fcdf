"""The held-out N2I loss of the network, of its input and of the best Gaussian filter of the input.

The N2I loss ``E||f(x_J) - y_J||^2`` over pairs whose noise is independent equals the error to
the clean image plus a constant, the target's noise variance (Hendriksen et al., IEEE TCI
2020). On slices the network never trained on it therefore ranks any denoisers ``f`` by their
true error without ground truth. Three are compared: the network, the input itself (no
denoising) and the in-plane Gaussian filter of the input whose sigma minimises the same loss.
Subtracting the target's noise variance, estimated from split differences, turns the losses
into estimated errors; their ratio is the network's gain over the Gaussian in dB.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from .gaussian import tune_gaussian

__all__ = ["fov_disk", "heldout_losses"]


def fov_disk(ny: int, nx: int) -> np.ndarray:
    """The reconstruction's field of view: the disk inscribed in the slice."""
    yy, xx = np.mgrid[:ny, :nx]
    return np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) <= min(ny, nx) / 2


def heldout_losses(model: Any, meta: dict[str, Any], splits: np.ndarray, slices: Any, *,
                   volume_shape: tuple[int, int, int] | None = None, device: Any = "cpu",
                   batch_size: int = 4, max_slices: int = 8) -> dict[str, Any]:
    """N2I losses on held-out ``slices`` of ``splits`` (K, z, y, x), in the data's units.

    Parameters
    ----------
    model, meta
        A network and its checkpoint's metadata (:func:`tomodenoise.train.load_checkpoint`):
        strategy, normalisation, neighbours.
    slices : sequence of int
        Slices the network never trained on (the checkpoint's ``val_slices``); at most
        ``max_slices`` evenly spaced ones are used.

    Returns
    -------
    dict
        ``network``, ``input``, ``gaussian`` (losses), ``gaussian_sigma``, ``noise_variance``
        (the target's, estimated), ``gain_over_gaussian_db`` and ``gain_over_input_db`` (None
        when an estimated error is not positive), ``beats_gaussian`` and ``slices``.
    """
    import torch

    from ..train.checkpoint import checkpoint_neighbour_axis, checkpoint_neighbours
    from ..train.data import N2IPairs, as_batch, denormalise

    splits = np.asarray(splits, dtype=np.float32)
    k, nz, ny, nx = splits.shape
    sl = np.asarray(slices, dtype=np.int64).reshape(-1)
    if sl.size == 0:
        raise ValueError("no held-out slices: the held-out N2I loss needs slices the network never trained on")
    if sl.size > max_slices:
        sl = sl[np.unique(np.linspace(0, sl.size - 1, max_slices).round().astype(int))]
    strategy = meta.get("strategy", "X:1")
    norm = meta.get("normalisation")
    pairs = N2IPairs(splits, strategy, sl, neighbours=checkpoint_neighbours(meta),
                     volume_shape=volume_shape, neighbour_axis=checkpoint_neighbour_axis(meta))
    disk = fov_disk(ny, nx)
    items = [(int(z), j) for z in sl for j in range(k)]
    inputs = [pairs.single_input(z, j) for z, j in items]
    targets = [pairs.target(z, j) for z, j in items]

    def loss(outs: list[np.ndarray]) -> float:
        return float(np.mean([np.mean((o[disk] - t[disk]).astype(np.float64) ** 2) for o, t in zip(outs, targets)]))

    outs = []
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    model.eval()
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            x = as_batch([pairs.network_input(z, j) for z, j in chunk], norm).to(dev)
            y = denormalise(model(x).float().cpu().numpy()[:, 0], norm)
            outs.extend(list(y.astype(np.float32)))
    net = loss(outs)
    raw = loss(inputs)
    sigma, gauss, _ = tune_gaussian(inputs, targets, mask=disk)
    # The target's noise variance: one split's (X:1) or the mean of K-1 splits' (1:X).
    var_split = float(np.mean([np.mean(((splits[a, sl] - splits[b, sl])[:, disk]).astype(np.float64) ** 2) / 2
                               for a, b in combinations(range(k), 2)]))
    var_t = var_split if strategy == "X:1" else var_split / (k - 1)

    def gain(ref: float) -> float | None:
        e_net, e_ref = net - var_t, ref - var_t
        return float(10 * np.log10(e_ref / e_net)) if e_net > 0 and e_ref > 0 else None

    return {"network": net, "input": raw, "gaussian": gauss, "gaussian_sigma": float(sigma),
            "noise_variance": var_t, "gain_over_gaussian_db": gain(gauss), "gain_over_input_db": gain(raw),
            "beats_gaussian": bool(net < gauss), "slices": [int(z) for z in sl], "units": "data units squared"}
