"""The Noise2Inverse training loop: epochs of shuffled batches on one process or on every rank
of a ``torch.distributed`` group (one :func:`~tomodenoise.train.step.train_step` per batch).

:func:`train_n2i` is the driver: the run is set up by :mod:`tomodenoise.train.setup`, and
between batches and epochs it calls one object per concern (:mod:`tomodenoise.train.callbacks`:
the time budget and early stopping, ``best.pt`` / ``last.pt`` also when interrupted, the
progress; :mod:`tomodenoise.train.validation`: the held-out N2I loss).

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
- Every step clips the gradients' global norm to ``grad_clip`` (:func:`~tomodenoise.train.step.train_step`).
- Early stopping: ``early_stopping`` epochs without a relative improvement of ``min_delta``
  in the held-out N2I loss.
- Warm start (``init_from``): the weights of a checkpoint of the same network trained on
  another scan; optimiser, schedule, normalisation and held-out slices are this run's.
- A resumed run continues the schedule and the time budget (``steps`` and ``elapsed_s``
  are stored in the checkpoints).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.train.callbacks import Checkpoints, Progress, Stopping
from tomodenoise.train.checkpoint import load_checkpoint
from tomodenoise.train.data import epoch_generator, item_rng, make_batch
from tomodenoise.train.distributed import summed
from tomodenoise.train.schedule import Budget, lr_factor
from tomodenoise.train.setup import Run, TrainState, prepare_run, start_state
from tomodenoise.train.step import train_step
from tomodenoise.train.validation import Validation

__all__ = ["TrainResult", "train_n2i"]


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
        within a volume and every volume is held out in part (:func:`~tomodenoise.train.data.split_items`).

    Returns
    -------
    TrainResult

    See the module's notes on epochs, resume, the time budget, early stopping and warm start.
    """
    run = prepare_run(recon_splits, cfg, model_cfg, out_dir, normalisation=normalisation,
                      volume_shape=volume_shape, run_config=run_config)
    state = start_state(run)
    clock = clock or time.monotonic
    budget = Budget(total_steps=run.cfg.epochs * run.steps_per_epoch, seconds=run.minutes * 60.0,
                    started=clock() - state.elapsed_before, clock=clock)
    stop, ckpt = Stopping(run, state, budget), Checkpoints(run, state, budget)
    validate = Validation(run.val_pairs, run.norm, run.cfg.batch_size, run.device, run.world)
    progress = Progress(run, state, budget, on_epoch)
    stopped, epoch = "epochs", None
    try:
        for epoch in range(state.start_epoch + 1, run.cfg.epochs + 1):
            if stop.before_epoch(epoch):
                stopped = "early_stopping"
                break
            t0 = clock()
            train_loss, partial = _train_epoch(run, state, epoch, stop, progress)
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
            monitor = validate(state.model, entry)
            improved = stop.improved(monitor, epoch)
            if improved:
                state.best_val, state.best_epoch = monitor, epoch
            entry.update(
                seconds=round(clock() - t0, 3), lr=float(state.optimizer.param_groups[0]["lr"]),
                improved=bool(improved), partial=partial, step=state.step, elapsed_s=round(budget.elapsed, 3),
                share=round(progress.share(), 4),
            )
            state.history.append(entry)
            stopped = stop.after_epoch(epoch, partial)
            ckpt.after_epoch(epoch, improved, stopped)
            progress.after_epoch(epoch, entry)
            if stopped != "epochs":
                break
    except BaseException as exc:
        stopped = "interrupted"
        ckpt.interrupted(exc, epoch)
        raise
    finally:
        budget_check = progress.close(stopped)
    if run.world > 1:
        torch.distributed.barrier()
    ckpt.finish(stopped)
    return _result(run, state, stopped, budget_check)


def _train_epoch(run: Run, state: TrainState, epoch: int, stop: Stopping, progress: Progress) -> tuple[float, bool]:
    """One epoch of batches, or its first part when the time budget ends; ``(train loss, cut short)``,
    over every rank's batches."""
    cfg = run.cfg
    order, positions = _epoch_items(run, epoch)
    state.model.train()
    loss_sum, loss_n, partial = 0.0, 0, False
    for b0 in range(0, len(order), cfg.batch_size):
        expired, share = stop.between_batches(state.step)
        if loss_n and expired:
            partial = True
            break
        x, t = _batch(run, epoch, order[b0 : b0 + cfg.batch_size], positions[b0 : b0 + cfg.batch_size])
        lr = cfg.lr * lr_factor(cfg.schedule, share, cfg.warmup)
        loss = train_step(state.model, state.optimizer, x, t, lr, cfg.grad_clip, autocast=run.fast.autocast)
        state.step += 1
        loss_sum += float(loss) * len(x)
        loss_n += len(x)
        progress.after_step(epoch, loss_sum / loss_n)
    if run.world > 1:
        loss_sum, n, cut = summed([loss_sum, loss_n, float(partial)], run.device)
        loss_n, partial = int(n), bool(cut)
    return loss_sum / max(loss_n, 1), partial


def _epoch_items(run: Run, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """This rank's items of ``epoch`` in the epoch's shuffled order, and their positions in it.

    Rank r takes positions r, r + world, ...: batch i of all ranks is batch i of one process.
    """
    gen, _ = epoch_generator(run.cfg.seed, epoch)
    order = torch.randperm(run.items, generator=gen).numpy()
    positions = np.arange(run.items)
    if run.world > 1:
        r, w = run.rank, run.world
        order, positions = order[r::w][: run.per_rank], positions[r::w][: run.per_rank]
    return order, positions


def _batch(run: Run, epoch: int, order: np.ndarray, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the items ``order`` (patches and augmentations from their ``positions``), on the device."""
    pairs, k, cfg = run.train_pairs, run.k, run.cfg
    items = [(int(pairs.slices[i // k]), int(i % k)) for i in order % len(pairs)]
    rngs = [item_rng(cfg.seed, epoch, int(p)) for p in positions]
    x, t = make_batch(pairs, items, run.patch, rngs, cfg.augment, run.norm)
    x, t = x.to(run.device, non_blocking=True), t.to(run.device, non_blocking=True)
    if run.fast.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, t


def _result(run: Run, state: TrainState, stopped: str, budget_check: dict[str, Any]) -> TrainResult:
    best = run.out_dir / "best.pt"
    return TrainResult(
        checkpoint=best,
        last_checkpoint=run.out_dir / "last.pt",
        history=state.history,
        normalisation=run.norm,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val,
        stopped=stopped,
        val_slices=run.val_idx.tolist(),
        model=load_checkpoint(best, device=run.device)[0] if run.rank == 0 else None,
        budget=budget_check,
        train_config=run.cfg.model_dump(mode="json"),
        model_config=run.model_cfg.model_dump(mode="json"),
    )
