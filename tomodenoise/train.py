"""Noise2Inverse training (Hendriksen, Pelt & Batenburg, IEEE TCI 2020).

The K split reconstructions ``(split, z, y, x)`` show the same object with independent
noise. For every slice and every split ``j``:

- strategy ``"X:1"``: input = mean of the other K-1 splits, target = split ``j``;
- strategy ``"1:X"``: input = split ``j``, target = mean of the other K-1 splits.

Rotating ``j`` over all K splits gives ``K x slices`` training pairs. The sum of the K splits
is kept in memory, so a leave-one-out mean is ``(sum - split_j) / (K - 1)``.

Validation holds out whole z slices (never trained on) and uses the same N2I loss (MSE
between the network output and the noisy target over all K rotations). The checkpoint kept
as ``best.pt`` is the epoch with the lowest validation loss; ``last.pt`` is the latest epoch.

Checkpoints are plain dicts of tensors and primitive containers, readable with
``torch.load(path, weights_only=True)``, written to a temporary name and renamed.

Distributed training: when ``torch.distributed`` is initialised (e.g. under ``torchrun``)
each rank trains on its shard of every epoch's shuffled items, the model is wrapped in
``DistributedDataParallel``, losses are all-reduced and only rank 0 writes checkpoints.
``batch_size`` is then per rank (the effective batch is ``world_size * batch_size``) and batch
normalisation statistics are per rank. ``python -m tomodenoise.train`` is the entry point
for ``torchrun``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)
from tqdm.auto import tqdm

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.models import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "N2IPairs",
    "TrainResult",
    "compute_normalisation",
    "load_checkpoint",
    "n2i_validation_loss",
    "normalise",
    "denormalise",
    "resolve_device",
    "split_slices",
    "train_n2i",
]

CHECKPOINT_FORMAT = "tomodenoise-n2i"
CHECKPOINT_VERSION = 1
STRATEGIES = ("X:1", "1:X")


# --- data ------------------------------------------------------------------------------------
def _check_splits(recon_splits: Any) -> np.ndarray:
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
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.splits = _check_splits(recon_splits)
        self.k = int(self.splits.shape[0])
        self.strategy = strategy
        if split_sum is None:
            split_sum = self.splits.sum(axis=0, dtype=np.float64).astype(np.float32)
        if split_sum.shape != self.splits.shape[1:]:
            raise ValueError(f"split_sum shape {split_sum.shape} does not match {self.splits.shape[1:]}")
        self.sum = split_sum
        n_z = self.splits.shape[1]
        self.slices = np.arange(n_z) if slices is None else np.asarray(slices, dtype=np.int64).reshape(-1)
        if self.slices.size and (self.slices.min() < 0 or self.slices.max() >= n_z):
            raise ValueError(f"slice indices out of range [0, {n_z}): {self.slices.tolist()}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(y, x)`` of one slice."""
        return tuple(self.splits.shape[2:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.k * len(self.slices)

    def leave_one_out(self, z: int, j: int) -> np.ndarray:
        """Mean of all splits but ``j`` at slice ``z``: ``(sum - split_j) / (K - 1)``."""
        return (self.sum[z] - self.splits[j, z]) / np.float32(self.k - 1)

    def pair(self, z: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(input, target)`` for slice ``z`` (absolute index) and split ``j``."""
        loo = self.leave_one_out(z, j)
        single = self.splits[j, z]
        return (loo, single) if self.strategy == "X:1" else (single, loo)

    def network_input(self, z: int, j: int) -> np.ndarray:
        """What the network sees as input for slice ``z`` and split ``j`` (training and inference)."""
        return self.pair(z, j)[0]

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
            x = pairs.network_input(int(z), j).astype(np.float64)
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


# --- helpers ---------------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available")
    return dev


def _primitive(obj: Any, where: str = "value") -> Any:
    """Convert to tensors/primitives/lists/dicts only (for ``weights_only`` checkpoints)."""
    if obj is None:
        return None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)  # also str subclasses (enums, TorchVersion), which weights_only rejects
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k): _primitive(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_primitive(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "model_dump"):
        return _primitive(obj.model_dump(mode="json"), where)
    raise TypeError(f"cannot store {where} of type {type(obj).__name__} in a checkpoint")


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _epoch_generator(seed: int, epoch: int) -> tuple[torch.Generator, np.random.Generator]:
    """RNGs that depend only on (seed, epoch): a resumed run draws what an uninterrupted one would."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return g, np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])


def _augment(x: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    x, t = np.rot90(x, k), np.rot90(t, k)
    if flip:
        x, t = x[:, ::-1], t[:, ::-1]
    return x, t


# --- losses ----------------------------------------------------------------------------------
@torch.no_grad()
def n2i_validation_loss(
    model: nn.Module,
    pairs: N2IPairs,
    normalisation: dict[str, float] | None,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
) -> float:
    """N2I loss on whole slices: mean squared error between ``model(input)`` and the noisy
    target over all slices of ``pairs`` and all K rotations, in normalised units.

    Its minimum is not zero: it includes the target's noise variance, so compare values
    only between models/epochs on the same data.
    """
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    items = [(int(z), j) for z in pairs.slices for j in range(pairs.k)]
    for i in range(0, len(items), batch_size):
        chunk = [pairs.pair(z, j) for z, j in items[i : i + batch_size]]
        x = torch.from_numpy(normalise(np.stack([c[0] for c in chunk]), normalisation)[:, None]).to(device)
        t = torch.from_numpy(normalise(np.stack([c[1] for c in chunk]), normalisation)[:, None]).to(device)
        total += float(F.mse_loss(model(x), t, reduction="sum"))
        n += t.numel()
    model.train(was_training)
    return total / max(n, 1)


# Indirection so tests can replace the validation loss.
_validate = n2i_validation_loss


# --- results ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train_n2i` returns.

    Attributes
    ----------
    checkpoint : Path
        ``out_dir/best.pt``: the epoch with the lowest validation loss.
    last_checkpoint : Path
        ``out_dir/last.pt``: the latest epoch (resume from it).
    history : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``val_loss`` (absent when nothing is
        held out), ``seconds``, ``lr``, ``improved``, ``partial`` (epoch cut short by
        ``max_minutes``). Losses are in normalised units.
    normalisation : dict
        ``{"mean": float, "std": float}`` applied to inputs and targets.
    best_epoch : int
        Epoch of ``best.pt`` (1-based).
    best_val_loss : float or None
        Its validation loss (the training loss when nothing is held out).
    stopped : str
        ``"epochs"``, ``"early_stopping"`` or ``"max_minutes"``.
    val_slices : list of int
        The held-out slices.
    model : torch.nn.Module or None
        The network with the best weights, in eval mode (None on ranks other than 0).
    """

    checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    normalisation: dict[str, float]
    best_epoch: int
    best_val_loss: float | None
    stopped: str
    val_slices: list[int] = field(default_factory=list)
    model: nn.Module | None = None


# --- checkpoints -----------------------------------------------------------------------------
def _checkpoint(
    *,
    kind: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    k: int,
    normalisation: dict[str, float],
    epoch: int,
    best_epoch: int,
    best_val: float | None,
    history: list[dict[str, Any]],
    val_slices: list[int],
    shape: tuple[int, ...],
    run_config: Any,
    stopped: str | None,
) -> dict[str, Any]:
    import tomodenoise

    model_dump = model_cfg.model_dump(mode="json")
    last = history[-1] if history else {}
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "model": {"name": model_dump["name"], "params": _primitive(model_dump["params"], "model params")},
        "state_dict": {k_: v.detach().cpu() for k_, v in _unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "normalisation": {"mean": float(normalisation["mean"]), "std": float(normalisation["std"])},
        "strategy": cfg.strategy,
        "k": int(k),
        "split": {"k": int(k), "strategy": cfg.strategy},
        "train_config": _primitive(cfg.model_dump(mode="json"), "train config"),
        "run_config": _primitive(run_config, "run_config"),
        "epoch": int(epoch),
        "best_epoch": int(best_epoch),
        "best_val_loss": None if best_val is None else float(best_val),
        "history": _primitive(history, "history"),
        "val_slices": [int(v) for v in val_slices],
        "data_shape": [int(v) for v in shape],
        "metrics": {
            "best_val_loss": None if best_val is None else float(best_val),
            "best_epoch": int(best_epoch),
            "train_loss": last.get("train_loss"),
            "val_loss": last.get("val_loss"),
            "stopped": stopped,
        },
        "versions": {"tomodenoise": str(tomodenoise.__version__), "torch": str(torch.__version__)},
    }


def _load_raw(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tomodenoise N2I checkpoint (format {CHECKPOINT_FORMAT!r})")
    return ckpt


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`train_n2i` (``torch.load(weights_only=True)``).

    Returns
    -------
    model : torch.nn.Module
        The network on ``device``, in eval mode.
    meta : dict
        Everything else in the checkpoint (without weights and optimiser state):
        ``model`` (name, params), ``normalisation``, ``strategy``, ``k``, ``split``,
        ``train_config``, ``run_config``, ``epoch``, ``best_epoch``, ``best_val_loss``,
        ``history``, ``val_slices``, ``metrics``, ``versions``.
    """
    ckpt = _load_raw(path)
    model = build_model(ckpt["model"]["name"], **ckpt["model"]["params"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(resolve_device(device)).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer")}
    return model, meta


# --- training --------------------------------------------------------------------------------
def _batch(
    pairs: N2IPairs,
    items: list[tuple[int, int]],
    patch: tuple[int, int] | None,
    rng: np.random.Generator,
    augment: bool,
    normalisation: dict[str, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ts = [], []
    ny, nx = pairs.shape
    for z, j in items:
        x, t = pairs.pair(z, j)
        if patch is not None:
            py, px = patch
            y0 = int(rng.integers(ny - py + 1))
            x0 = int(rng.integers(nx - px + 1))
            x, t = x[y0 : y0 + py, x0 : x0 + px], t[y0 : y0 + py, x0 : x0 + px]
        if augment:
            x, t = _augment(x, t, rng)
        xs.append(x)
        ts.append(t)
    x = normalise(np.stack(xs), normalisation).astype(np.float32, copy=False)
    t = normalise(np.stack(ts), normalisation).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(x[:, None])), torch.from_numpy(np.ascontiguousarray(t[:, None]))


def train_n2i(
    recon_splits: Any,
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    out_dir: str | os.PathLike,
    *,
    run_config: Any = None,
    normalisation: dict[str, float] | None = None,
    on_epoch: Any = None,
) -> TrainResult:
    """Train a denoiser with Noise2Inverse on split reconstructions.

    Parameters
    ----------
    recon_splits : array_like, shape (split, z, y, x)
        K >= 2 split reconstructions with independent noise (float32).
    cfg : TrainConfig
        Strategy, epochs, batch size, learning rate (Adam), patches, validation fraction or
        slices, early stopping, wall-clock limit, seed, device, resume, progress bar.
    model_cfg : ModelConfig
        Network name and parameters (see :func:`tomodenoise.models.build_model`).
    out_dir : path
        Where ``best.pt`` and ``last.pt`` are written (created if missing).
    run_config : dict or pydantic model, optional
        The whole run configuration, stored in the checkpoints.
    normalisation : dict, optional
        ``{"mean", "std"}`` to use instead of computing it from the training slices (e.g.
        ``{"mean": 0.0, "std": 1.0}`` when the caller already normalised per channel).
    on_epoch : callable, optional
        ``on_epoch(epoch, epochs, entry)`` after every epoch (``entry``: that epoch's losses,
        as in ``TrainResult.history``); the flows use it for a progress artifact.

    Returns
    -------
    TrainResult

    Notes
    -----
    - Each epoch visits every (training slice, split j) pair ``patches_per_slice`` times
      (once for whole slices) in an order shuffled from ``(seed, epoch)``; patch positions
      and augmentations also depend only on ``(seed, epoch)``, so resuming from ``last.pt``
      continues exactly where an uninterrupted run would be (on CPU; GPU kernels may be
      non-deterministic).
    - Resuming (``cfg.resume``) restores weights, optimiser state, epoch count, best
      validation loss, history, normalisation and held-out slices; ``cfg.epochs`` is the
      total number of epochs, so a run resumed at epoch 20 with ``epochs=50`` trains 30 more.
      The learning rate of ``cfg`` replaces the stored one.
    - With no held-out slices (``val_fraction=0`` or a single slice) the training loss is
      monitored instead for ``best.pt`` and early stopping.
    - ``max_minutes`` is checked between batches; an epoch cut short is validated, saved and
      flagged ``partial`` in the history.
    """
    t_start = time.monotonic()
    deadline = t_start + cfg.max_minutes * 60.0 if cfg.max_minutes else math.inf
    splits = _check_splits(recon_splits)
    for j in range(splits.shape[0]):  # one split at a time: a small temporary
        if not np.isfinite(splits[j]).all():
            raise ValueError(f"recon_splits contains NaN or inf values (split {j})")
    k, n_z = splits.shape[:2]
    out_dir = Path(out_dir)
    rank, world = _dist_info()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

    resume = _load_raw(cfg.resume) if cfg.resume else None
    if resume is not None:
        stored_model = resume["model"]
        want = model_cfg.model_dump(mode="json")
        if stored_model["name"] != want["name"] or stored_model["params"] != _primitive(want["params"]):
            raise ValueError(
                f"resume checkpoint {cfg.resume} has model {stored_model}, the configuration asks for "
                f"{{'name': {want['name']!r}, 'params': {want['params']!r}}}"
            )
        if resume["k"] != k or resume["strategy"] != cfg.strategy:
            raise ValueError(
                f"resume checkpoint {cfg.resume} was trained with k={resume['k']}, strategy={resume['strategy']!r}; "
                f"got k={k}, strategy={cfg.strategy!r}"
            )
        val_idx = np.asarray(resume["val_slices"], dtype=np.int64)
        if val_idx.size and val_idx.max() >= n_z:
            raise ValueError(f"resume checkpoint holds out slices {val_idx.tolist()} but the data has {n_z} slices")
        train_idx = np.setdiff1d(np.arange(n_z), val_idx)
    else:
        train_idx, val_idx = split_slices(n_z, cfg.val_fraction, cfg.val_slices)

    split_sum = splits.sum(axis=0, dtype=np.float64).astype(np.float32)
    train_pairs = N2IPairs(splits, cfg.strategy, train_idx, split_sum=split_sum)
    val_pairs = N2IPairs(splits, cfg.strategy, val_idx, split_sum=split_sum) if val_idx.size else None
    if resume is not None:
        norm = dict(resume["normalisation"])
    elif normalisation is not None:
        norm = {"mean": float(normalisation["mean"]), "std": float(normalisation["std"])}
    else:
        norm = compute_normalisation(train_pairs)

    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg.name, **model_cfg.params).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict[str, Any]] = []
    start_epoch, best_epoch, best_val = 0, 0, None
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr
        start_epoch = int(resume["epoch"])
        best_epoch = int(resume["best_epoch"])
        best_val = resume["best_val_loss"]
        history = list(resume["history"])
        src_best = Path(cfg.resume).with_name("best.pt")
        if rank == 0 and not best_path.exists() and src_best.exists():
            shutil.copyfile(src_best, best_path)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    ny, nx = train_pairs.shape
    patch = None if cfg.patch_size is None else (min(cfg.patch_size, ny), min(cfg.patch_size, nx))
    reps = cfg.patches_per_slice if patch is not None else 1
    n_items = len(train_pairs) * reps
    per_rank = n_items // world if world > 1 else n_items
    if per_rank < 1:
        raise ValueError(f"{n_items} training items cannot be shared by {world} ranks")

    def save(kind: str, path: Path, epoch: int, stopped: str | None) -> None:
        if rank != 0:
            return
        ckpt = _checkpoint(
            kind=kind, model=model, optimizer=optimizer, model_cfg=model_cfg, cfg=cfg, k=k,
            normalisation=norm, epoch=epoch, best_epoch=best_epoch, best_val=best_val, history=history,
            val_slices=val_idx.tolist(), shape=splits.shape, run_config=run_config, stopped=stopped,
        )
        _atomic_save(ckpt, path)

    stopped = "epochs"
    bar = tqdm(
        total=cfg.epochs, initial=min(start_epoch, cfg.epochs), desc="N2I training", unit="epoch",
        disable=not cfg.progress or rank != 0, dynamic_ncols=True,
    )
    epoch, saved_epoch = None, start_epoch
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if cfg.early_stopping and best_epoch and epoch - 1 - best_epoch >= cfg.early_stopping:
                stopped = "early_stopping"
                break
            t0 = time.monotonic()
            gen, rng = _epoch_generator(cfg.seed, epoch)
            order = torch.randperm(n_items, generator=gen).numpy()
            if world > 1:
                order = order[rank::world][:per_rank]
            model.train()
            loss_sum, loss_n, partial = 0.0, 0, False
            for b0 in range(0, len(order), cfg.batch_size):
                if loss_n and time.monotonic() > deadline:
                    partial = True
                    break
                idx = order[b0 : b0 + cfg.batch_size] % len(train_pairs)
                items = [(int(train_pairs.slices[i // k]), int(i % k)) for i in idx]
                x, t = _batch(train_pairs, items, patch, rng, cfg.augment, norm)
                x, t = x.to(device, non_blocking=True), t.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                loss = F.mse_loss(model(x), t)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(items)
                loss_n += len(items)
                bar.set_postfix(train=f"{loss_sum / loss_n:.4g}", val=_fmt(best_val), refresh=False)
            if world > 1:
                red = torch.tensor([loss_sum, loss_n, float(partial)], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(red)
                loss_sum, loss_n, partial = float(red[0]), int(red[1]), bool(red[2])
            train_loss = loss_sum / max(loss_n, 1)
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            if val_pairs is not None:
                val_loss = _validate(_unwrap(model), val_pairs, norm, batch_size=cfg.batch_size, device=device)
                if world > 1:  # every rank validates the same slices; keep them in agreement
                    red = torch.tensor([val_loss], dtype=torch.float64, device=device)
                    torch.distributed.broadcast(red, 0)
                    val_loss = float(red[0])
                entry["val_loss"] = float(val_loss)
                monitor = float(val_loss)
            else:
                monitor = train_loss
            improved = best_val is None or monitor < best_val
            if improved:
                best_val, best_epoch = monitor, epoch
            entry.update(
                seconds=round(time.monotonic() - t0, 3), lr=float(optimizer.param_groups[0]["lr"]),
                improved=bool(improved), partial=partial,
            )
            history.append(entry)
            if partial or (time.monotonic() > deadline and epoch < cfg.epochs):
                stopped = "max_minutes"
            elif cfg.early_stopping and epoch - best_epoch >= cfg.early_stopping and epoch < cfg.epochs:
                stopped = "early_stopping"
            final = stopped if stopped != "epochs" or epoch == cfg.epochs else None
            if improved:
                save("best", best_path, epoch, final)
            save("last", last_path, epoch, final)
            saved_epoch = epoch
            bar.update(1)
            bar.set_postfix(train=f"{train_loss:.4g}", val=_fmt(entry.get("val_loss")), best=_fmt(best_val))
            if on_epoch is not None:  # e.g. a progress artifact in the UI; never fatal to training
                try:
                    on_epoch(epoch, cfg.epochs, dict(entry))
                except Exception as exc:  # pragma: no cover
                    log.warning("on_epoch callback failed: %s", exc)
            if stopped != "epochs":
                break
    except BaseException as exc:
        # SIGTERM (Prefect's TerminationSignal), Ctrl-C, SystemExit: keep what was learnt so far;
        # the epoch under way is counted as not done, so a resumed run repeats it.
        if not isinstance(exc, Exception) and rank == 0 and epoch is not None:
            if saved_epoch != epoch:  # mid-epoch: keep the weights so far, the epoch counts as not done
                history[:] = [h for h in history if h["epoch"] < epoch]
                save("last", last_path, epoch - 1, None)
            log.warning("training interrupted in epoch %d: saved %s; run the same command again to resume",
                        epoch, last_path)
        raise
    finally:
        bar.close()
    if world > 1:
        torch.distributed.barrier()

    if rank == 0 and not last_path.exists():
        # Nothing was trained (e.g. resumed past cfg.epochs): keep the resumed state on disk.
        save("last", last_path, start_epoch, stopped)
        if not best_path.exists():
            save("best", best_path, start_epoch, stopped)
    best_model = None
    if rank == 0:
        best_model, _ = load_checkpoint(best_path, device=device)
    return TrainResult(
        checkpoint=best_path,
        last_checkpoint=last_path,
        history=history,
        normalisation=norm,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        stopped=stopped,
        val_slices=val_idx.tolist(),
        model=best_model,
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


# --- torchrun entry point --------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun -m tomodenoise.train`` (or plain ``python -m``).

    ``--recon`` is a ``.npy`` file of split reconstructions ``(split, z, y, x)`` (memory-mapped);
    ``--config`` a run YAML (its ``model`` and ``train`` sections are used). Initialises the
    process group from the ``torchrun`` environment (NCCL on GPUs, gloo on CPUs).
    """
    import argparse

    from tomodenoise.config import RunConfig

    p = argparse.ArgumentParser(prog="python -m tomodenoise.train", description=main.__doc__)
    p.add_argument("--recon", required=True, help=".npy file (split, z, y, x)")
    p.add_argument("--config", required=True, help="run configuration YAML")
    p.add_argument("--out", required=True, help="output folder for best.pt / last.pt")
    args = p.parse_args(argv)
    cfg = RunConfig.from_file(args.config)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    try:
        splits = np.load(args.recon, mmap_mode="r")
        res = train_n2i(splits, cfg.train, cfg.model, args.out, run_config=cfg.model_dump(mode="json"))
        if _dist_info()[0] == 0:
            print(f"best checkpoint: {res.checkpoint} (epoch {res.best_epoch}, val loss {_fmt(res.best_val_loss)})")
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
