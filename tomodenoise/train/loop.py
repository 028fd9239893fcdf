"""The Noise2Inverse training loop: epochs of shuffled batches on one process or on every rank
of a ``torch.distributed`` group (one :func:`~tomodenoise.train.step.train_step` per batch),
validation on held-out slices with the N2I loss, ``best.pt`` and ``last.pt`` after every
epoch, resume, warm start, the learning-rate schedule, early stopping and the time budget.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.models import build_model
from tomodenoise.train.checkpoint import atomic_save, build_checkpoint, load_checkpoint, load_raw, primitive
from tomodenoise.train.data import (
    N2IPairs,
    as_batch,
    check_splits,
    compute_normalisation,
    epoch_generator,
    item_rng,
    make_batch,
    split_items,
)
from tomodenoise.logs import summary
from tomodenoise.train.distributed import agree, dist_info, resolve_device, speedups, unwrap
from tomodenoise.train.progress import TrainingProgress
from tomodenoise.train.recipe import AUTO_FIELDS, resolve_recipe
from tomodenoise.train.schedule import Budget, EarlyStopping, default_minutes, lr_factor
from tomodenoise.train.step import train_step

log = logging.getLogger("tomodenoise.train")

__all__ = ["TrainResult", "format_loss", "n2i_validation_loss", "train_n2i", "warm_start_weights"]


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
        x = as_batch([c[0] for c in chunk], normalisation).to(device)
        t = as_batch([c[1] for c in chunk], normalisation).to(device)
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
        held out), ``seconds``, ``lr``, ``improved``, ``step`` and ``elapsed_s`` (steps and
        training seconds at its end), ``partial`` (epoch cut short by
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
    budget : dict
        The time budget against the recipe's needs (:class:`~tomodenoise.train.progress.TrainingProgress`): ``minutes``,
        ``steps_in_budget`` (estimated after a warm-up), ``steps_needed``, ``steps`` (done),
        ``short`` (True when the budget allowed fewer steps than needed) and ``warning``.
    train_config, model_config : dict
        The settings used, every ``auto`` resolved by the recipe.
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
    budget: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)


# --- training --------------------------------------------------------------------------------
def train_n2i(
    recon_splits: Any,
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    out_dir: str | os.PathLike,
    *,
    run_config: Any = None,
    normalisation: dict[str, float] | None = None,
    on_epoch: Any = None,
    clock: Any = None,
    volume_shape: tuple[int, int, int] | None = None,
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
    clock : callable, optional
        Seconds for the time budget and the history (default :func:`time.monotonic`); the
        benchmarks pass one that stops while they score the model.
    volume_shape : (int, int, int), optional
        ``(time, channel, z)`` when ``recon_splits`` stacks several volumes (dynamic time
        steps, XRD-CT channels) along its z axis: neighbours (``cfg.neighbour_axis``) stay
        within a volume and every volume is held out in part (:func:`split_items`).

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
    - The time budget (``max_minutes``; empty: :data:`tomodenoise.train.schedule.DEFAULT_MINUTES`
      for the device) is checked between batches; an epoch cut short is validated, saved and
      flagged ``partial`` in the history. The learning rate follows ``cfg.schedule`` over the
      run's progress (steps, or time once the budget binds: see
      :class:`tomodenoise.train.schedule.Budget`), so it has decayed when the budget ends.
    - Every step clips the gradients' global norm to ``grad_clip`` (:func:`train_step`).
    - Early stopping: ``early_stopping`` epochs without a relative improvement of ``min_delta``
      in the held-out N2I loss.
    - Warm start (``init_from``): the weights of a checkpoint of the same network trained on
      another scan; optimiser, schedule, normalisation and held-out slices are this run's.
    - A resumed run continues the schedule and the time budget (``steps`` and ``elapsed_s``
      are stored in the checkpoints).
    """
    splits = check_splits(recon_splits)
    for j in range(splits.shape[0]):  # one split at a time: a small temporary
        if not np.isfinite(splits[j]).all():
            raise ValueError(f"recon_splits contains NaN or inf values (split {j})")
    k, n_z = splits.shape[:2]
    out_dir = Path(out_dir)
    rank, world = dist_info()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

    resume = load_raw(cfg.resume) if cfg.resume else None
    if resume is not None:
        val_idx = np.asarray(resume["val_slices"], dtype=np.int64)
        train_idx = np.setdiff1d(np.arange(n_z), val_idx)
    else:
        train_idx, val_idx = split_items(volume_shape or (1, 1, n_z), cfg.val_fraction, cfg.val_slices)
    if resume is not None:  # the settings the interrupted run resolved, not a new choice (other device, ...)
        stored = resume.get("train_config") or {}
        cfg = cfg.model_copy(update={f: stored[f] for f in AUTO_FIELDS if getattr(cfg, f) == "auto" and f in stored})
    recipe = resolve_recipe(cfg, model_cfg, image_shape=tuple(splits.shape[2:]), volume_shape=volume_shape or (1, 1, n_z),
                            n_train=len(train_idx), k=k, device_type=device.type, world=world)
    cfg, model_cfg = recipe.train, recipe.model
    if rank == 0:
        summary(log, recipe.line())
    model_cfg = with_input_channels(model_cfg, 2 * cfg.neighbours + 1)
    if resume is not None:
        stored_model = resume["model"]
        want = model_cfg.model_dump(mode="json")
        if stored_model["name"] != want["name"] or stored_model["params"] != primitive(want["params"]):
            raise ValueError(
                f"resume checkpoint {cfg.resume} has model {stored_model}, the configuration asks for "
                f"{{'name': {want['name']!r}, 'params': {want['params']!r}}}"
            )
        if resume["k"] != k or resume["strategy"] != cfg.strategy:
            raise ValueError(
                f"resume checkpoint {cfg.resume} was trained with k={resume['k']}, strategy={resume['strategy']!r}; "
                f"got k={k}, strategy={cfg.strategy!r}"
            )
        if val_idx.size and val_idx.max() >= n_z:
            raise ValueError(f"resume checkpoint holds out slices {val_idx.tolist()} but the data has {n_z} slices")

    split_sum = splits.sum(axis=0, dtype=np.float64).astype(np.float32)
    nb = dict(neighbours=cfg.neighbours, volume_shape=volume_shape, neighbour_axis=cfg.neighbour_axis)
    train_pairs = N2IPairs(splits, cfg.strategy, train_idx, split_sum=split_sum, **nb)
    val_pairs = N2IPairs(splits, cfg.strategy, val_idx, split_sum=split_sum, **nb) if val_idx.size else None
    if resume is not None:
        norm = dict(resume["normalisation"])
    elif normalisation is not None:
        norm = {"mean": float(normalisation["mean"]), "std": float(normalisation["std"])}
    else:
        norm = compute_normalisation(train_pairs)

    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg.name, **model_cfg.params).to(device)
    fast = speedups(device, cfg.precision)
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init_from and resume is None:  # warm start: weights only; optimiser, schedule, data are new
        model.load_state_dict(warm_start_weights(cfg.init_from, model_cfg))
        log.info("warm start from %s", cfg.init_from)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict[str, Any]] = []
    start_epoch, best_epoch, best_val = 0, 0, None
    steps_before, elapsed_before = 0, 0.0
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr
        start_epoch = int(resume["epoch"])
        best_epoch = int(resume["best_epoch"])
        best_val = resume["best_val_loss"]
        history = list(resume["history"])
        steps_before, elapsed_before = int(resume.get("steps", 0)), float(resume.get("elapsed_s", 0.0))
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
        ckpt = build_checkpoint(
            kind=kind, model=model, optimizer=optimizer, model_cfg=model_cfg, cfg=cfg, k=k,
            normalisation=norm, epoch=epoch, best_epoch=best_epoch, best_val=best_val, history=history,
            val_slices=val_idx.tolist(), shape=splits.shape, run_config=run_config, stopped=stopped,
            steps=step, elapsed_s=budget.elapsed,
        )
        atomic_save(ckpt, path)

    steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
    minutes = cfg.max_minutes or default_minutes(device.type)
    clock = clock or time.monotonic
    budget = Budget(total_steps=cfg.epochs * steps_per_epoch, seconds=minutes * 60.0,
                    started=clock() - elapsed_before, clock=clock)
    step = steps_before
    stopper = EarlyStopping(cfg.early_stopping, cfg.min_delta, best_val, best_epoch)
    if rank == 0 and start_epoch < cfg.epochs:
        ends = datetime.now() + timedelta(seconds=budget.left() or 0.0)
        summary(log, f"training   {model_cfg.name}, {len(train_idx)} slices x {k} splits: up to "
                     f"{cfg.epochs - start_epoch} epochs of {steps_per_epoch} steps, {cfg.schedule} schedule; "
                     f"ends by {ends:%H:%M} (train.max_minutes = {minutes:g})"
                     + (f" or sooner, {cfg.early_stopping} epochs after the held-out loss stops improving"
                        if cfg.early_stopping else ""))
    stopped = "epochs"
    all_steps = cfg.epochs * steps_per_epoch
    bar = TrainingProgress(all_steps, step, budget, minutes, enabled=bool(cfg.progress) and rank == 0,
                           warn=rank == 0)
    epoch, saved_epoch = None, start_epoch
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            if stopper.should_stop(epoch - 1):
                stopped = "early_stopping"
                break
            t0 = clock()
            gen, _ = epoch_generator(cfg.seed, epoch)
            order = torch.randperm(n_items, generator=gen).numpy()
            positions = np.arange(n_items)
            if world > 1:  # rank r: positions r, r + world, ...; batch i of all ranks = batch i of one process
                order, positions = order[rank::world][:per_rank], positions[rank::world][:per_rank]
            model.train()
            loss_sum, loss_n, partial = 0.0, 0, False
            for b0 in range(0, len(order), cfg.batch_size):
                expired, progress = budget.expired(), budget.progress(step)
                if world > 1 and budget.timed:  # rank 0's clock rules: every rank stops and decays alike
                    expired, progress = agree(expired, progress, device)
                if loss_n and expired:
                    partial = True
                    break
                idx = order[b0 : b0 + cfg.batch_size] % len(train_pairs)
                items = [(int(train_pairs.slices[i // k]), int(i % k)) for i in idx]
                rngs = [item_rng(cfg.seed, epoch, int(p)) for p in positions[b0 : b0 + cfg.batch_size]]
                x, t = make_batch(train_pairs, items, patch, rngs, cfg.augment, norm)
                x, t = x.to(device, non_blocking=True), t.to(device, non_blocking=True)
                if fast.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = cfg.lr * lr_factor(cfg.schedule, progress, cfg.warmup)
                loss = train_step(model, optimizer, x, t, lr, cfg.grad_clip, autocast=fast.autocast)
                step += 1
                loss_sum += float(loss) * len(items)
                loss_n += len(items)
                bar.update(step, epoch, cfg.epochs, loss_sum / loss_n, format_loss(best_val))
            if world > 1:
                red = torch.tensor([loss_sum, loss_n, float(partial)], dtype=torch.float64, device=device)
                torch.distributed.all_reduce(red)
                loss_sum, loss_n, partial = float(red[0]), int(red[1]), bool(red[2])
            train_loss = loss_sum / max(loss_n, 1)
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            if val_pairs is not None:
                val_loss = _validate(unwrap(model), val_pairs, norm, batch_size=cfg.batch_size, device=device)
                if world > 1:  # every rank validates the same slices; keep them in agreement
                    red = torch.tensor([val_loss], dtype=torch.float64, device=device)
                    torch.distributed.broadcast(red, 0)
                    val_loss = float(red[0])
                entry["val_loss"] = float(val_loss)
                monitor = float(val_loss)
            else:
                monitor = train_loss
            improved = stopper.improved(monitor, epoch)
            if improved:
                best_val, best_epoch = monitor, epoch
            entry.update(
                seconds=round(clock() - t0, 3), lr=float(optimizer.param_groups[0]["lr"]),
                improved=bool(improved), partial=partial, step=step, elapsed_s=round(budget.elapsed, 3),
                share=round(bar.share(step), 4),
            )
            history.append(entry)
            if partial or (budget.expired() and epoch < cfg.epochs):
                stopped = "max_minutes"
            elif stopper.should_stop(epoch) and epoch < cfg.epochs:
                stopped = "early_stopping"
            final = stopped if stopped != "epochs" or epoch == cfg.epochs else None
            if improved:
                save("best", best_path, epoch, final)
            save("last", last_path, epoch, final)
            saved_epoch = epoch
            if on_epoch is not None:  # e.g. a progress artifact in the UI; never fatal to training
                try:
                    on_epoch(epoch, cfg.epochs, dict(entry))
                except Exception as exc:  # pragma: no cover
                    log.warning("on_epoch callback failed: %s", exc)
            if stopped != "epochs":
                break
    except BaseException as exc:
        stopped = "interrupted"
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
        budget_check = bar.close(step, stopped)
        if rank == 0:
            _write_json(out_dir / "budget.json", budget_check)
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
        budget=budget_check,
        train_config=cfg.model_dump(mode="json"),
        model_config=model_cfg.model_dump(mode="json"),
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    import json

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def with_input_channels(model_cfg: ModelConfig, channels: int) -> ModelConfig:
    """``model_cfg`` with ``in_channels`` set for ``channels`` input channels (neighbours)."""
    from tomodenoise.models import model_defaults

    have = int(model_cfg.params.get("in_channels", 1))
    if have == channels:
        return model_cfg
    defaults = model_defaults(model_cfg.name)
    if "in_channels" not in defaults or ("out_channels" not in defaults and channels != 1):
        raise ValueError(f"model {model_cfg.name!r} cannot take {channels} input channels (train.neighbours); "
                         "set train.neighbours: 0")
    if "in_channels" in model_cfg.params:
        raise ValueError(f"model.params.in_channels = {have} but train.neighbours needs {channels} input channels; "
                         "leave in_channels unset")
    return model_cfg.model_copy(update={"params": {**model_cfg.params, "in_channels": channels}})


def warm_start_weights(path: str | os.PathLike, model_cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of checkpoint ``path`` for a warm start, checked against ``model_cfg``."""
    raw = load_raw(path)
    want = model_cfg.model_dump(mode="json")
    have = raw["model"]
    if have["name"] != want["name"] or have["params"] != primitive(want["params"]):
        raise ValueError(f"train.init_from {path} holds a {have['name']} {have['params']}; the configuration "
                         f"asks for {want['name']} {want['params']}: warm start needs the same network")
    return raw["state_dict"]


def format_loss(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"
