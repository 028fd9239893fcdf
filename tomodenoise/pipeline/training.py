"""The train stage: one network over every time step and channel of the store."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig, TrainConfig
from ..io.store import ScanStore
from ..logs import show_progress
from .keys import invalidate_from, key_for, stage_current
from .reconstruction import load_splits, volume_shape

__all__ = ["channel_scales", "normalise_channels", "record_training", "start_training",
           "store_channel_scales", "train", "training_data",
           "uses_channel_normalisation"]

log = logging.getLogger(__name__)


def uses_channel_normalisation(store: ScanStore, cfg: RunConfig) -> bool:
    """Per-channel normalisation: several channels and ``channels.normalise``."""
    return cfg.channels.normalise and volume_shape(store)[1] > 1


def channel_scales(splits: np.ndarray, shape: tuple[int, int, int]) -> dict[str, list[float]]:
    """Mean and standard deviation of each channel's full reconstruction (the mean of the splits).

    Diffraction channels span orders of magnitude: each is mapped to zero mean and unit
    spread before training, and back after denoising.
    """
    nt, nc, nz = shape
    k, _, ny, nx = splits.shape
    return _scales(splits.reshape(k, nt, nc, nz, ny, nx)[:, :, c] for c in range(nc))


def _scales(channels) -> dict[str, list[float]]:
    means, stds = [], []
    for split_block in channels:  # (split, ...) of one channel
        v = np.asarray(split_block, dtype=np.float32).mean(axis=0, dtype=np.float64)
        m, s = float(v.mean()), float(v.std())
        means.append(m)
        stds.append(s if np.isfinite(s) and s > 1e-12 * max(1.0, abs(m)) else 1.0)
    return {"mean": means, "std": stds}


def normalise_channels(data: np.ndarray, channel_axis: int, scales: dict[str, list[float]],
                       inverse: bool = False) -> np.ndarray:
    """``(x - mean_c) / std_c`` along ``channel_axis`` (or the inverse), in place for float32 data."""
    shape = [1] * data.ndim
    shape[channel_axis] = -1
    m = np.asarray(scales["mean"], dtype=np.float32).reshape(shape)
    s = np.asarray(scales["std"], dtype=np.float32).reshape(shape)
    if inverse:
        data *= s
        data += m
    else:
        data -= m
        data /= s
    return data


def store_channel_scales(store: ScanStore) -> dict[str, list[float]]:
    """:func:`channel_scales` of the store's reconstructions, read one channel at a time."""
    rec = store.array("recon")
    return _scales(rec[:, :, c] for c in range(rec.shape[2]))


def training_data(store: ScanStore, cfg: RunConfig) -> tuple[np.ndarray, tuple[int, int, int], dict | None]:
    """What one training process (or every DDP rank) reads: the stacked split reconstructions
    in memory, channel-normalised with the store's ``channel_normalisation`` when that applies,
    their ``(time, channel, z)`` shape and the normalisation to pass to the training (None:
    computed from the data)."""
    shape = volume_shape(store)
    splits = load_splits(store)
    if not uses_channel_normalisation(store, cfg):
        return splits, shape, None
    scales = store.attrs.get("channel_normalisation") or store_channel_scales(store)
    k, _, ny, nx = splits.shape
    normalise_channels(splits.reshape(k, shape[0], shape[1], shape[2], ny, nx), 2, scales)
    return splits, shape, {"mean": 0.0, "std": 1.0}


def train(store: ScanStore, cfg: RunConfig, on_epoch: Any = None) -> Path:
    """Train the denoiser on the split reconstructions; returns the best checkpoint.

    One network is trained on all time steps and channels (stacked, see
    :func:`~tomodenoise.pipeline.reconstruction.load_splits`); with several channels and
    ``channels.normalise`` each channel is first normalised by its own mean and spread
    (stored in the store's ``channel_normalisation`` attribute for the denoise stage).

    With ``train.ranks`` > 1 (or ``auto`` on a machine with several GPUs) the training runs as
    that many DDP processes (:mod:`tomodenoise.pipeline.ddp`, started by torch's launcher);
    ``on_epoch`` then follows the slowest rank.

    Skipped when a model trained with these settings on these reconstructions exists. An
    interrupted training with the same settings resumes from ``model/last.pt``.
    """
    from ..train import train_n2i
    from ..train.launch import resolve_ranks

    key = key_for(store, cfg, "train")
    best = store.model_dir / "best.pt"
    if stage_current(store, "train", key) and best.exists():
        return best
    tcfg = cfg.train if show_progress() else cfg.train.model_copy(update={"progress": False})
    shape = volume_shape(store)
    axis = {"time": 0, "channel": 1, "z": 2}[tcfg.neighbour_axis]
    if isinstance(tcfg.neighbours, int) and tcfg.neighbours and shape[axis] == 1:
        log.warning("train.neighbour_axis = %s but the scan has one %s: the neighbour channels repeat the image",
                    tcfg.neighbour_axis, "time step" if axis == 0 else ("channel" if axis == 1 else "slice"))
    ranks, backend = resolve_ranks(tcfg.ranks, tcfg.device)
    tcfg = start_training(store, cfg, tcfg)
    t0 = time.perf_counter()
    if ranks > 1:
        from .ddp import train_ranks

        info = train_ranks(store, cfg.model_copy(update={"train": tcfg}), ranks, backend, on_epoch=on_epoch)
    else:
        splits, shape, normalisation = training_data(store, cfg)
        result = train_n2i(splits, tcfg, cfg.model, store.model_dir, run_config=cfg.model_dump(mode="json"),
                           on_epoch=on_epoch, volume_shape=shape, normalisation=normalisation)
        info = dict(checkpoint=str(result.checkpoint), epochs=len(result.history), best_epoch=result.best_epoch,
                    stopped=result.stopped, best_val_loss=_finite_or_none(result.best_val_loss),
                    budget=result.budget)
    record_training(store, cfg, info, time.perf_counter() - t0, ranks)
    return Path(info["checkpoint"])


def start_training(store: ScanStore, cfg: RunConfig, tcfg: TrainConfig | None = None) -> TrainConfig:
    """The stage's bookkeeping before training; returns the training settings to use.

    An interrupted training with the same key resumes from ``model/last.pt`` (``resume``
    set); otherwise the old model is forgotten. The channel normalisation is written to the
    store's attributes.
    """
    tcfg = tcfg or cfg.train
    key = key_for(store, cfg, "train")
    last = store.model_dir / "last.pt"
    started = store.attrs.get("train_started", {})
    if started.get("key") == key and last.exists() and tcfg.resume is None:
        log.info("resuming the interrupted training from %s", last)
        tcfg = tcfg.model_copy(update={"resume": str(last)})
    else:
        invalidate_from(store, "train")
        store.update_attrs(train_started={"key": key})
    if uses_channel_normalisation(store, cfg):
        store.update_attrs(channel_normalisation=store_channel_scales(store))
    return tcfg


def record_training(store: ScanStore, cfg: RunConfig, info: dict[str, Any], seconds: float, ranks: int) -> None:
    """Mark the train stage complete (``info``: checkpoint, epochs, best_epoch, stopped, best_val_loss)."""
    store.mark_stage("train", key=key_for(store, cfg, "train"), seconds=round(seconds, 3), ranks=ranks, **info)


def _finite_or_none(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None
