"""Noise2Inverse (Hendriksen, Pelt & Batenburg, IEEE TCI 2020) as a comparison method.

The scan's projections are split into ``k`` interlaced sets, each set is reconstructed with
FBP, and a network is trained with the project's own loop (:func:`tomodenoise.train.train_n2i`)
to map the mean of ``k - 1`` split reconstructions to the remaining one (``"X:1"``) or the
reverse (``"1:X"``); the volume is the mean of the ``k`` outputs
(:func:`tomodenoise.denoise.denoise`).

``train_n2i`` counts its work in epochs, so the comparison's step budget is met by choosing
the epochs, the patches per slice and (only when the slices do not fit the budget otherwise)
a subset of the training slices so that ``epochs x steps per epoch`` equals the budget
(:func:`plan_steps`). Checkpoints at a few points of the run are denoised as snapshots.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ..config import TrainConfig
from ..denoise import denoise
from ..logs import summaries_to_file_only
from ..train import load_checkpoint, split_slices, train_n2i
from .base import Context, MethodResult, Scan, Timer
from .training import LearnedConfig

__all__ = ["Noise2Inverse", "plan_steps", "n2i_slices"]

#: epochs a run aims for (validation and snapshot points); the exact step budget comes first
TARGET_EPOCHS = 8
#: a wall-clock cap that never binds (``TrainConfig.max_minutes`` would default to 10 on a CPU)
NO_CAP_MINUTES = 1e6


def plan_steps(steps: int, n_train: int, k: int, batch_size: int,
               target_epochs: int = TARGET_EPOCHS) -> tuple[int, int, int]:
    """``(epochs, patches_per_slice, n_slices)`` whose optimiser steps are at most ``steps``.

    One epoch of :func:`~tomodenoise.train.train_n2i` on ``n`` training slices takes
    ``ceil(n * k * patches / batch_size)`` steps. Among ``n`` from half of the slices that fit
    in one epoch up to all of them, plans within 1 % of ``steps`` come first, then those of at
    least 4 epochs (snapshot and validation points), then more slices, then fewer missing
    steps (none whenever a combination allows it), then a number of epochs near
    ``target_epochs``.
    """
    if steps < 1 or n_train < 1 or k < 1 or batch_size < 1:
        raise ValueError(f"plan_steps: need positive steps, slices, k, batch size; got {steps}, {n_train}, {k}, "
                         f"{batch_size}")
    fit = min(n_train, max(1, (steps * batch_size) // k))  # slices whose items fit in one epoch
    tol, few = steps // 100, min(4, steps)
    best: tuple | None = None
    for n in range(max(1, math.ceil(fit / 2)), fit + 1):
        per_patch = n * k
        reps = 1
        while True:
            spe = math.ceil(per_patch * reps / batch_size)
            if spe > steps:
                break
            epochs = steps // spe
            short = steps - epochs * spe
            key = (short > tol, epochs < few, -n, short, abs(math.log(epochs / target_epochs)), reps)
            if best is None or key < best[0]:
                best = (key, (epochs, reps, n))
            reps += 1
    if best is None:
        raise ValueError(f"{steps} steps of batch {batch_size} cannot visit one slice's {k} split pairs")
    return best[1]


def n2i_slices(n_z: int, tune_slice: int, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out z slices: the tuning slice alone is held out (for the N2I
    validation loss that picks the checkpoint), so N2I trains on as many slices as the other
    learned methods; without one, ``train_n2i``'s default middle block."""
    if 0 <= tune_slice < n_z and n_z >= 2:
        return np.setdiff1d(np.arange(n_z), [tune_slice]), np.array([tune_slice])
    return split_slices(n_z, val_fraction)


class Noise2Inverse(LearnedConfig):
    """Noise2Inverse: train on split FBPs with the project's training loop, average the k outputs."""

    method: Literal["n2i"] = "n2i"
    k: int = Field(4, ge=2, le=64, description="Interlaced angle splits")
    strategy: Literal["X:1", "1:X"] = Field("X:1", description="X:1: mean of k-1 splits -> one split; "
                                                               "1:X: one split -> mean of the others")
    snapshots: int = Field(4, ge=0, le=16, description="Checkpoints along the run denoised as snapshots")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        steps = int(self.steps or ctx.steps)
        splits = scan.split_fbps(self.k)
        n_z, ny, nx = splits.shape[1:]
        train_idx, val_idx = n2i_slices(n_z, ctx.tune_slice)
        epochs, reps, n_sub = plan_steps(steps, train_idx.size, self.k, self.batch_size)
        keep = train_idx[np.unique(np.linspace(0, train_idx.size - 1, n_sub).round().astype(int))]
        used = np.union1d(keep, val_idx)
        out_dir = Path(ctx.work_dir) / "n2i"
        if out_dir.exists():  # a fresh run, never a resume of an older one
            shutil.rmtree(out_dir)
        cfg = TrainConfig(
            strategy=self.strategy, epochs=epochs, batch_size=self.batch_size, lr=self.lr,
            patch_size=self.patch_size or max(ny, nx), patches_per_slice=reps,
            val_slices=np.searchsorted(used, val_idx).tolist() if val_idx.size else None,
            val_fraction=0.0 if not val_idx.size else 0.1, early_stopping=0, neighbours=0,
            max_minutes=ctx.minutes or NO_CAP_MINUTES, seed=ctx.seed,
            device="cuda" if str(ctx.device).startswith("cuda") else "cpu", progress=False,
        )
        marks = sorted({max(1, round(epochs * (i + 1) / self.snapshots)) for i in range(self.snapshots)})
        snap_dir = out_dir / "snapshots"
        when: dict[str, float] = {}

        def keep_snapshot(epoch: int, _epochs: int, entry: dict) -> None:
            if epoch in marks:
                snap_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out_dir / "last.pt", snap_dir / f"step{int(entry['step'])}.pt")
                when[f"{self.label}@step{int(entry['step'])}"] = float(entry.get("elapsed_s", entry["seconds"]))

        with Timer() as t, summaries_to_file_only("tomodenoise.train"):
            res = train_n2i(splits[:, used], cfg, self.model, out_dir, on_epoch=keep_snapshot)
        done = int(res.history[-1]["step"]) if res.history else 0
        ctx.log(f"{self.label}: {done} steps in {epochs} epochs on {keep.size} slices x {self.k} splits, "
                f"best epoch {res.best_epoch}, {t.seconds:.1f} s")

        def run_model(model) -> np.ndarray:
            return denoise(model, splits, strategy=self.strategy, normalisation=res.normalisation,
                           batch_size=self.batch_size, device=cfg.device)

        volume = run_model(res.model)
        snaps = {}
        for path in sorted(snap_dir.glob("step*.pt"), key=lambda p: int(p.stem[4:])) if snap_dir.exists() else []:
            model, _ = load_checkpoint(path, device=cfg.device)
            snaps[f"{self.label}@{path.stem}"] = run_model(model)
        return MethodResult(
            volume=volume.astype(np.float32),
            params={"k": self.k, "strategy": self.strategy, "steps": done, "epochs": epochs,
                    "patches_per_slice": reps, "best_epoch": res.best_epoch},
            train_seconds=t.seconds, snapshots=snaps,
            info={"train_slices": keep.tolist(), "val_slices": val_idx.tolist(), "stopped": res.stopped,
                  "best_val_loss": res.best_val_loss, "history": res.history,
                  "snapshot_seconds": {name: when[name] for name in snaps if name in when}},
        )
