"""Noise2Inverse training data: the (input, target) pairs of split reconstructions, the
split into training and held-out slices, the normalisation of inputs and targets, and the
random patches and augmentations that make one training batch (seeded per epoch).

Neighbour channels (``train.neighbours = n``): the network input of slice ``z`` is the
stack of the inputs of slices ``z - n .. z + n`` (clamped at the volume's ends), the target
that of slice ``z`` alone. The inputs of neighbouring slices hold noise independent of the
target split, so the N2I argument holds, and the network sees ``2n + 1`` noisy views of
nearly the same structure. The dynamic (time) and XRD-CT (channel) inputs use the same
mechanism along their axes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "STRATEGIES",
    "N2IPairs",
    "as_batch",
    "augment_pair",
    "check_splits",
    "compute_normalisation",
    "denormalise",
    "epoch_generator",
    "item_rng",
    "make_batch",
    "normalise",
    "split_items",
    "split_slices",
]

STRATEGIES = ("X:1", "1:X")
AXES = ("time", "channel", "z")  # the order in which several volumes are stacked


# --- data ------------------------------------------------------------------------------------
def check_splits(recon_splits: Any) -> np.ndarray:
    arr = np.asarray(recon_splits, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(
            f"recon_splits must be (split, z, y, x) with K >= 2 split reconstructions, got shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise ValueError(
            f"recon_splits has {arr.shape[0]} split(s); Noise2Inverse needs K >= 2 split reconstructions "
            "with independent noise (never the full-data reconstruction)"
        )
    if min(arr.shape[1:]) < 1:
        raise ValueError(f"recon_splits has an empty axis: shape {arr.shape}")
    return arr


class N2IPairs:
    """Noise2Inverse (input, target) pairs from split reconstructions.

    Parameters
    ----------
    recon_splits : array_like, shape (split, z, y, x)
        K >= 2 split reconstructions (float32; read once into memory).
    strategy : {"X:1", "1:X"}
        ``"X:1"``: input = mean of the other K-1 splits, target = split j.
        ``"1:X"``: input = split j, target = mean of the other K-1 splits.
    slices : sequence of int, optional
        The z slices these pairs are drawn from (all when omitted).
    split_sum : ndarray, shape (z, y, x), optional
        The sum over splits, when already computed (shared between datasets).
    neighbours : int
        Inputs of this many neighbours on each side as extra input channels (0: one channel).
    volume_shape : (int, int, int), optional
        ``(time, channel, z)`` when the second axis of ``recon_splits`` stacks several
        volumes (time steps, diffraction channels) in that order; default ``(1, 1, z)``.
        Neighbours never cross from one volume into the next.
    neighbour_axis : {"z", "time", "channel"}
        The axis along which neighbours are taken (slices; time steps: the time-neighbour
        variant of dynamic scans; diffraction channels), clamped at its ends.

    Notes
    -----
    Item ``i`` is slice ``slices[i // K]`` with split ``j = i % K`` as the single split, so
    ``len(pairs) == K * len(slices)``.
    """

    def __init__(
        self,
        recon_splits: Any,
        strategy: str = "X:1",
        slices: Any = None,
        *,
        split_sum: np.ndarray | None = None,
        neighbours: int = 0,
        volume_shape: tuple[int, int, int] | None = None,
        neighbour_axis: str = "z",
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if int(neighbours) < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        self.neighbours = int(neighbours)
        self.splits = check_splits(recon_splits)
        self.k = int(self.splits.shape[0])
        self.strategy = strategy
        if split_sum is None:
            split_sum = self.splits.sum(axis=0, dtype=np.float64).astype(np.float32)
        if split_sum.shape != self.splits.shape[1:]:
            raise ValueError(f"split_sum shape {split_sum.shape} does not match {self.splits.shape[1:]}")
        self.sum = split_sum
        n_z = self.splits.shape[1]
        self.volume_shape = (1, 1, n_z) if volume_shape is None else tuple(int(v) for v in volume_shape)
        if len(self.volume_shape) != 3 or int(np.prod(self.volume_shape)) != n_z:
            raise ValueError(f"volume_shape {volume_shape} (time, channel, z) does not hold the {n_z} images")
        if neighbour_axis not in AXES:
            raise ValueError(f"neighbour_axis must be one of {AXES}, got {neighbour_axis!r}")
        self.neighbour_axis = neighbour_axis
        self.slices = np.arange(n_z) if slices is None else np.asarray(slices, dtype=np.int64).reshape(-1)
        if self.slices.size and (self.slices.min() < 0 or self.slices.max() >= n_z):
            raise ValueError(f"slice indices out of range [0, {n_z}): {self.slices.tolist()}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(y, x)`` of one slice."""
        return tuple(self.splits.shape[2:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        """Channels of the network input: ``2 * neighbours + 1``."""
        return 2 * self.neighbours + 1

    def __len__(self) -> int:
        return self.k * len(self.slices)

    def leave_one_out(self, z: int, j: int) -> np.ndarray:
        """Mean of all splits but ``j`` at slice ``z``: ``(sum - split_j) / (K - 1)``."""
        return (self.sum[z] - self.splits[j, z]) / np.float32(self.k - 1)

    def single_input(self, z: int, j: int) -> np.ndarray:
        """The one-channel input of slice ``z`` for split ``j`` (``(y, x)``)."""
        return self.leave_one_out(z, j) if self.strategy == "X:1" else self.splits[j, z]

    def target(self, z: int, j: int) -> np.ndarray:
        return self.splits[j, z] if self.strategy == "X:1" else self.leave_one_out(z, j)

    def network_input(self, z: int, j: int) -> np.ndarray:
        """What the network sees for slice ``z`` and split ``j``: ``(y, x)``, or
        ``(2n + 1, y, x)`` with ``n`` neighbours (training and inference)."""
        if not self.neighbours:
            return self.single_input(z, j)
        return np.stack([self.single_input(i, j) for i in self.neighbour_indices(z)])

    def neighbour_indices(self, z: int) -> list[int]:
        """The images ``z - n .. z + n`` along ``neighbour_axis`` (clamped within the volume)."""
        pos = list(np.unravel_index(int(z), self.volume_shape))
        ax = AXES.index(self.neighbour_axis)
        last = self.volume_shape[ax] - 1
        out = []
        for d in range(-self.neighbours, self.neighbours + 1):
            p = list(pos)
            p[ax] = min(max(pos[ax] + d, 0), last)
            out.append(int(np.ravel_multi_index(p, self.volume_shape)))
        return out

    def pair(self, z: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input, target)`` for slice ``z`` (absolute index) and split ``j``."""
        return self.network_input(z, j), self.target(z, j)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.pair(int(self.slices[i // self.k]), i % self.k)


def split_slices(
    n_slices: int, val_fraction: float, val_slices: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation z slices; validation slices are held out whole.

    Parameters
    ----------
    n_slices : int
        Number of z slices.
    val_fraction : float
        Fraction of slices held out (a contiguous block in the middle of the volume,
        at least one slice when > 0, always leaving one for training).
    val_slices : sequence of int, optional
        Explicit validation slices (overrides ``val_fraction``).

    Returns
    -------
    train, val : ndarray of int
        Disjoint sorted slice indices. ``val`` is empty when nothing can be held out
        (``val_fraction == 0`` or a single slice).
    """
    all_idx = np.arange(n_slices)
    if val_slices is not None:
        val = np.unique(np.asarray(val_slices, dtype=np.int64).reshape(-1))
        if val.size and (val.min() < 0 or val.max() >= n_slices):
            raise ValueError(f"val_slices out of range [0, {n_slices}): {val.tolist()}")
        if val.size >= n_slices:
            raise ValueError("val_slices leaves no slice for training")
    elif val_fraction <= 0 or n_slices < 2:
        val = np.zeros(0, dtype=np.int64)
    else:
        n_val = min(max(1, int(round(val_fraction * n_slices))), n_slices - 1)
        start = (n_slices - n_val) // 2
        val = np.arange(start, start + n_val)
    train = np.setdiff1d(all_idx, val)
    return train, val


def split_items(
    volume_shape: tuple[int, int, int], val_fraction: float, val_slices: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out images of ``(time, channel, z)`` stacked volumes.

    One volume (or explicit ``val_slices``, flat indices): :func:`split_slices`. Several
    volumes with at least 4 slices each: the middle block of slices of every volume, so that
    every time step and channel is both trained on and validated. Thinner volumes (XRD-CT is
    often a single slice): evenly spaced images over all volumes.
    """
    nt, nc, nz = (int(v) for v in volume_shape)
    n = nt * nc * nz
    if nt * nc == 1 or val_slices is not None or val_fraction <= 0 or n < 2:
        return split_slices(n, val_fraction, val_slices)
    if nz >= 4:
        _, zval = split_slices(nz, val_fraction)
        val = (np.arange(nt * nc)[:, None] * nz + zval[None, :]).reshape(-1)
    else:
        n_val = min(max(1, int(round(val_fraction * n))), n - 1)
        val = np.unique(np.linspace(0, n - 1, n_val + 2)[1:-1].round().astype(np.int64))
    return np.setdiff1d(np.arange(n), val), np.sort(val)


# --- normalisation ---------------------------------------------------------------------------
def compute_normalisation(pairs: N2IPairs, max_slices: int = 64) -> dict[str, float]:
    """Mean and standard deviation of the network inputs over ``pairs`` (all K rotations).

    At most ``max_slices`` evenly spaced slices are used. The same affine map is applied to
    inputs and targets (they show the same object), and inverted on outputs.
    """
    sl = pairs.slices
    if sl.size == 0:
        raise ValueError("no slices to compute the normalisation from")
    if sl.size > max_slices:
        sl = sl[np.linspace(0, sl.size - 1, max_slices).round().astype(int)]
    s = s2 = 0.0
    n = 0
    for z in sl:
        for j in range(pairs.k):
            x = pairs.single_input(int(z), j).astype(np.float64)
            s += float(x.sum())
            s2 += float((x * x).sum())
            n += x.size
    mean = s / n
    var = max(s2 / n - mean * mean, 0.0)
    std = math.sqrt(var)
    if not np.isfinite(std) or std <= 1e-12 * max(1.0, abs(mean)):
        std = 1.0
    return {"mean": float(mean), "std": float(std)}


def normalise(x: Any, normalisation: dict[str, float] | None) -> Any:
    """``(x - mean) / std`` (identity when ``normalisation`` is None)."""
    if not normalisation:
        return x
    return (x - normalisation["mean"]) / normalisation["std"]


def denormalise(x: Any, normalisation: dict[str, float] | None) -> Any:
    """Inverse of :func:`normalise`."""
    if not normalisation:
        return x
    return x * normalisation["std"] + normalisation["mean"]


# --- batches ---------------------------------------------------------------------------------
def epoch_generator(seed: int, epoch: int) -> tuple[torch.Generator, np.random.Generator]:
    """RNGs that depend only on (seed, epoch): a resumed run draws what an uninterrupted one would."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g, np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])


def item_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The RNG of the item at ``position`` of an epoch's shuffled order (its patch and augmentation).

    It depends only on (seed, epoch, position), not on the batch or the rank that draws the
    item: ``n`` DDP ranks with batch ``b`` draw exactly the patches one process with batch
    ``n * b`` draws.
    """
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(position)])


def augment_pair(x: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 rotations and flips of the square (the dihedral group), the same for both;
    on the last two axes (a leading channel axis is kept)."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    x, t = np.rot90(x, k, axes=(-2, -1)), np.rot90(t, k, axes=(-2, -1))
    if flip:
        x, t = x[..., ::-1], t[..., ::-1]
    return x, t


def as_batch(images: list[np.ndarray], normalisation: dict[str, float] | None) -> torch.Tensor:
    """``(batch, channels, y, x)`` float32 tensor of normalised ``(y, x)`` or ``(c, y, x)`` images."""
    arr = normalise(np.stack(images), normalisation).astype(np.float32, copy=False)
    if arr.ndim == 3:
        arr = arr[:, None]
    return torch.from_numpy(np.ascontiguousarray(arr))


def make_batch(
    pairs: N2IPairs,
    items: list[tuple[int, int]],
    patch: tuple[int, int] | None,
    rng: np.random.Generator | list[np.random.Generator],
    augment: bool,
    normalisation: dict[str, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of ``items`` ((slice, split) pairs), cut to random patches and
    augmented; ``rng`` is one generator for the batch or one per item (:func:`item_rng`)."""
    xs, ts = [], []
    ny, nx = pairs.shape
    rngs = rng if isinstance(rng, list) else [rng] * len(items)
    for (z, j), rng in zip(items, rngs):
        x, t = pairs.pair(z, j)
        if patch is not None:
            py, px = patch
            y0 = int(rng.integers(ny - py + 1))
            x0 = int(rng.integers(nx - px + 1))
            x, t = x[..., y0 : y0 + py, x0 : x0 + px], t[y0 : y0 + py, x0 : x0 + px]
        if augment:
            x, t = augment_pair(x, t, rng)
        xs.append(x)
        ts.append(t)
    return as_batch(xs, normalisation), as_batch(ts, normalisation)
