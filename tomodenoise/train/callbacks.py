"""What the training loop (:func:`~tomodenoise.train.train_n2i`) calls between batches and
epochs, one object per concern: when to stop (:class:`Stopping`: the time budget and early
stopping), the checkpoints (:class:`Checkpoints`: ``best.pt``, ``last.pt``, also when
interrupted) and what people see (:class:`Progress`: the bar, ``on_epoch``, ``budget.json``).
The held-out loss is :class:`~tomodenoise.train.validation.Validation`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tomodenoise.logs import summary
from tomodenoise.train.checkpoint import atomic_save, build_checkpoint
from tomodenoise.train.distributed import agree
from tomodenoise.train.progress import TrainingProgress, format_loss
from tomodenoise.train.schedule import Budget, EarlyStopping
from tomodenoise.train.setup import Run, TrainState

__all__ = ["Checkpoints", "Progress", "Stopping"]

log = logging.getLogger("tomodenoise.train")


class Stopping:
    """When training stops: the time budget, checked between batches (rank 0's clock rules on
    every rank) and after each epoch, and early stopping on the monitored loss."""

    def __init__(self, run: Run, state: TrainState, budget: Budget) -> None:
        self.run, self.budget = run, budget
        self.early = EarlyStopping(run.cfg.early_stopping, run.cfg.min_delta, state.best_val, state.best_epoch)

    def before_epoch(self, epoch: int) -> bool:
        """True when a resumed run had already stopped improving before ``epoch``."""
        return self.early.should_stop(epoch - 1)

    def between_batches(self, step: int) -> tuple[bool, float]:
        """``(budget expired, run's progress for the schedule)``, the same on every rank."""
        expired, progress = self.budget.expired(), self.budget.progress(step)
        if self.run.world > 1 and self.budget.timed:  # every rank stops and decays alike
            expired, progress = agree(expired, progress, self.run.device)
        return expired, progress

    def improved(self, monitor: float, epoch: int) -> bool:
        return self.early.improved(monitor, epoch)

    def after_epoch(self, epoch: int, partial: bool) -> str:
        """Why training stops after ``epoch``: ``max_minutes``, ``early_stopping``, or ``epochs`` (it goes on,
        or that was the last one)."""
        last = epoch >= self.run.cfg.epochs
        if partial or (self.budget.expired() and not last):
            return "max_minutes"
        if self.early.should_stop(epoch) and not last:
            return "early_stopping"
        return "epochs"


class Checkpoints:
    """``best.pt`` and ``last.pt`` (rank 0 alone writes them): after every epoch, when training
    is interrupted, and at the end of a run that trained nothing."""

    def __init__(self, run: Run, state: TrainState, budget: Budget) -> None:
        self.run, self.state, self.budget = run, state, budget
        self.best, self.last = run.out_dir / "best.pt", run.out_dir / "last.pt"
        self.saved_epoch = state.start_epoch
        if run.resume is not None and run.rank == 0 and not self.best.exists():  # resumed into another folder
            src_best = Path(run.cfg.resume).with_name("best.pt")
            if src_best.exists():
                shutil.copyfile(src_best, self.best)

    def save(self, kind: str, epoch: int, stopped: str | None) -> None:
        """Write ``kind`` (``best`` or ``last``) as of the end of ``epoch``."""
        run, st = self.run, self.state
        if run.rank != 0:
            return
        ckpt = build_checkpoint(
            kind=kind, model=st.model, optimizer=st.optimizer, model_cfg=run.model_cfg, cfg=run.cfg, k=run.k,
            normalisation=run.norm, epoch=epoch, best_epoch=st.best_epoch, best_val=st.best_val, history=st.history,
            val_slices=run.val_idx.tolist(), shape=run.splits.shape, run_config=run.run_config, stopped=stopped,
            steps=st.step, elapsed_s=self.budget.elapsed,
        )
        atomic_save(ckpt, self.best if kind == "best" else self.last)

    def after_epoch(self, epoch: int, improved: bool, stopped: str) -> None:
        final = stopped if stopped != "epochs" or epoch == self.run.cfg.epochs else None
        if improved:
            self.save("best", epoch, final)
        self.save("last", epoch, final)
        self.saved_epoch = epoch

    def interrupted(self, exc: BaseException, epoch: int | None) -> None:
        """SIGTERM (Prefect's TerminationSignal), Ctrl-C, SystemExit in ``epoch``: keep what was
        learnt so far; the epoch under way counts as not done, so a resumed run repeats it."""
        if isinstance(exc, Exception) or self.run.rank != 0 or epoch is None:
            return
        if self.saved_epoch != epoch:  # mid-epoch: keep the weights so far, the epoch counts as not done
            self.state.history[:] = [h for h in self.state.history if h["epoch"] < epoch]
            self.save("last", epoch - 1, None)
        log.warning("training interrupted in epoch %d: saved %s; run the same command again to resume", epoch, self.last)

    def finish(self, stopped: str) -> None:
        """Nothing was trained (e.g. resumed past ``train.epochs``): keep the resumed state on disk."""
        if self.run.rank != 0 or self.last.exists():
            return
        self.save("last", self.state.start_epoch, stopped)
        if not self.best.exists():
            self.save("best", self.state.start_epoch, stopped)


class Progress:
    """What people see (rank 0): the plan when training starts, the bar or plain lines after each
    step (:class:`~tomodenoise.train.progress.TrainingProgress`), ``on_epoch(epoch, epochs, entry)``
    after each epoch (never fatal to training) and the budget check in ``budget.json`` at the end."""

    def __init__(self, run: Run, state: TrainState, budget: Budget,
                 on_epoch: Callable[[int, int, dict], None] | None = None) -> None:
        self.run, self.state, self.on_epoch = run, state, on_epoch
        cfg, rank = run.cfg, run.rank
        if rank == 0 and state.start_epoch < cfg.epochs:
            ends = datetime.now() + timedelta(seconds=budget.left() or 0.0)
            summary(log, f"training   {run.model_cfg.name}, {len(run.train_pairs.slices)} slices x {run.k} splits: "
                         f"up to {cfg.epochs - state.start_epoch} epochs of {run.steps_per_epoch} steps, "
                         f"{cfg.schedule} schedule; ends by {ends:%H:%M} (train.max_minutes = {run.minutes:g})"
                         + (f" or sooner, {cfg.early_stopping} epochs after the held-out loss stops improving"
                            if cfg.early_stopping else ""))
        self.bar = TrainingProgress(cfg.epochs * run.steps_per_epoch, state.step, budget, run.minutes,
                                    enabled=bool(cfg.progress) and rank == 0, warn=rank == 0)

    def after_step(self, epoch: int, train_loss: float) -> None:
        self.bar.update(self.state.step, epoch, self.run.cfg.epochs, train_loss, format_loss(self.state.best_val))

    def share(self) -> float:
        """The run's progress in [0, 1] (:meth:`TrainingProgress.share`)."""
        return self.bar.share(self.state.step)

    def after_epoch(self, epoch: int, entry: dict[str, Any]) -> None:
        if self.on_epoch is None:
            return
        try:  # e.g. a progress artifact in the UI
            self.on_epoch(epoch, self.run.cfg.epochs, dict(entry))
        except Exception as exc:  # pragma: no cover
            log.warning("on_epoch callback failed: %s", exc)

    def close(self, stopped: str) -> dict[str, Any]:
        """Close the bar; the budget check (written to ``budget.json`` by rank 0)."""
        check = self.bar.close(self.state.step, stopped)
        if self.run.rank == 0:
            _write_json(self.run.out_dir / "budget.json", check)
        return check


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
