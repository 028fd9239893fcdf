"""The train stage: one network over every time step and channel of the store.

In one process, or as ``n`` DDP ranks (``train.ranks``): :func:`train_ranks` starts them with
torch's launcher, each running :data:`RANK_ENTRY` (:mod:`tomodenoise.pipeline.ddp`, which calls
back into this module's functions, never the other way round).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig, TrainConfig
from ..io.store import ScanStore
from ..logs import show_progress
from .keys import invalidate_from, key_for, stage_current
from .reconstruction import load_splits, volume_shape

__all__ = ["RANK_ENTRY", "normalise_channels", "progress_dir", "record_training", "stage_record",
           "start_training", "store_channel_scales", "train", "train_ranks", "training_data",
           "uses_channel_normalisation"]

log = logging.getLogger(__name__)

#: The module every DDP rank of the train stage runs (``python -m``; also what
#: ``deploy/slurm/train.sbatch`` starts with ``srun torchrun``).
RANK_ENTRY = "tomodenoise.pipeline.ddp"


def uses_channel_normalisation(store: ScanStore, cfg: RunConfig) -> bool:
    """Per-channel normalisation: several channels and ``channels.normalise``."""
    return cfg.channels.normalise and volume_shape(store)[1] > 1


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
    """Mean and standard deviation of each channel's full reconstruction (the mean of the
    splits), read from the store one channel at a time.

    Diffraction channels span orders of magnitude: each is mapped to zero mean and unit
    spread before training, and back after denoising.
    """
    rec = store.array("recon")
    means, stds = [], []
    for c in range(rec.shape[2]):
        v = np.asarray(rec[:, :, c], dtype=np.float32).mean(axis=0, dtype=np.float64)  # (split, ...) of one channel
        m, s = float(v.mean()), float(v.std())
        means.append(m)
        stds.append(s if np.isfinite(s) and s > 1e-12 * max(1.0, abs(m)) else 1.0)
    return {"mean": means, "std": stds}


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
    that many DDP processes (:func:`train_ranks`); ``on_epoch`` then follows the slowest rank.

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


def progress_dir(store: ScanStore) -> Path:
    """Where the DDP ranks write their progress (and their logs, under ``logs/``)."""
    return store.model_dir / "ranks"


def train_ranks(store: ScanStore, cfg: RunConfig, ranks: int, backend: str,
                on_epoch: Callable[[int, int, dict], None] | None = None) -> dict[str, Any]:
    """Train with ``ranks`` DDP processes running :data:`RANK_ENTRY`; returns the stage record
    (checkpoint, epochs, ...).

    ``cfg.train`` is used as given (its ``resume`` included); ``on_epoch(epoch, epochs, entry)``
    follows the slowest rank. Raises :class:`~tomodenoise.train.launch.RankFailure` when a rank
    dies; ``last.pt`` keeps the last complete epoch, so running the stage again resumes.
    """
    import shutil

    from tqdm.auto import tqdm

    from ..logs import bars_wanted, summary
    from ..train.launch import launch_ranks

    folder = progress_dir(store)
    shutil.rmtree(folder, ignore_errors=True)  # progress of an earlier launch means nothing now
    folder.mkdir(parents=True)
    run_yaml = cfg.save(folder / "run.yaml")
    summary(log, f"training   {ranks} DDP ranks ({backend}); their logs: {folder / 'logs'}")
    seen = {"epoch": 0}
    epochs = cfg.train.epochs if isinstance(cfg.train.epochs, int) else None  # auto: the ranks resolve it
    bar = tqdm(total=epochs, desc=f"N2I training, {ranks} ranks", unit="epoch", dynamic_ncols=True,
               disable=not (cfg.train.progress and bars_wanted()))

    def follow(progress: dict[int, dict[str, Any]]) -> None:
        if len(progress) < ranks:
            return
        epoch = min(int(p.get("epoch", 0)) for p in progress.values())  # the slowest rank
        if epoch > seen["epoch"]:
            bar.update(epoch - seen["epoch"])
            seen["epoch"] = epoch
            entry = dict(progress[0].get("entry") or {}, ranks=ranks)
            bar.set_postfix_str(f"train {entry.get('train_loss', float('nan')):.4g}", refresh=False)
            if on_epoch is not None:
                total = progress[0].get("epochs", epochs)
                if isinstance(total, int) and bar.total != total:
                    bar.total = total
                on_epoch(epoch, total if isinstance(total, int) else 0, entry)

    try:
        launch_ranks(["-m", RANK_ENTRY, "--store", str(store.root), "--config", str(run_yaml)],
                     ranks, log_dir=folder / "logs", progress_dir=folder, on_progress=follow)
    finally:
        bar.close()
    record = stage_record(store)
    if (record.get("budget") or {}).get("warning"):  # said in the ranks' logs only: say it here too
        log.warning("%s", record["budget"]["warning"])
    return record


def stage_record(store: ScanStore) -> dict[str, Any]:
    """The train stage's record from what DDP rank 0 wrote: ``last.pt`` (history, best epoch)."""
    from ..train.checkpoint import load_raw

    raw = load_raw(store.model_dir / "last.pt")
    budget = store.model_dir / "budget.json"
    return dict(checkpoint=str(store.model_dir / "best.pt"), epochs=len(raw.get("history", [])),
                best_epoch=int(raw["best_epoch"]), stopped=(raw.get("metrics") or {}).get("stopped") or "epochs",
                best_val_loss=raw.get("best_val_loss"),
                budget=json.loads(budget.read_text()) if budget.exists() else None)


def _finite_or_none(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None
