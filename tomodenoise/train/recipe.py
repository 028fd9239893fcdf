"""The training recipe ``run`` uses: the measured one, sized from the scan, the device and the budget.

Every ``train`` setting left at ``auto`` (and the network's size when ``model.params`` is
empty) is chosen here, from figures measured on the benchmarks (``benchmarks/RESULTS.md``):

- network: MS-D, depth 30, width 1 (foam, 15 min on 2 CPU cores: 21.09 dB against 20.29 dB
  for a U-Net 3 x 16 and 19.82 dB for the older recipes; depth 30 sees ~3x more data than
  the published depth 100 in the same minutes);
- neighbours: 2 slices on each side as extra input channels when the volume has 5 or more
  along the neighbour axis (foam, 5 min: 20.70 dB with, 19.39 dB without), fewer on thinner
  volumes;
- patches of 128 px (whole slices when a slice is at most 160 px), batch 4 on a CPU (16 on a
  GPU), Adam at lr 2e-3 with warm-up and cosine decay over the budget;
- an epoch of about :data:`STEPS_PER_EPOCH` steps (``patches_per_slice`` sized from the
  number of training slices), so that few slices still give the held-out loss and the
  checkpoints a regular beat;
- :data:`STEPS_PLANNED` steps in all, cut by the time budget (``train.max_minutes``).

:data:`STEPS_NEEDED` is the number of steps this recipe needed on the benchmarks to reach
the quality targets (calibrated on the real tooth, checked on the foam's curve); the training
warns when its budget allows fewer (:func:`budget_warning`), and the quality check at the end
of the run says whether the result is usable whatever the budget. A ``train.batch_size``
given larger than the training items of an epoch is kept, with a warning
(:func:`batch_warning`, in :attr:`Recipe.warnings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tomodenoise.config import ModelConfig, TrainConfig

__all__ = ["AUTO_FIELDS", "STEPS_NEEDED", "STEPS_PER_EPOCH", "STEPS_PLANNED", "Recipe", "batch_warning",
           "budget_warning", "recipe_model", "resolve_recipe"]

#: Steps the recipe needed on the benchmarks to meet the quality targets with a margin: on the real
#: tooth (benchmarks/real_scans/calibrate_steps.py) 100 steps kept 0.53 of the edge gradient (flagged),
#: 200 steps 0.83, 400 steps 1.07 with the noise removed 0.85 (targets 0.8); on the foam the
#: recipe was at 20.15 dB after ~280 steps of its 21.09 dB in 15 minutes (RESULTS.md, issue 9).
STEPS_NEEDED = 400
#: Steps planned when ``train.epochs`` is auto; the time budget usually ends the run first.
STEPS_PLANNED = 8000
#: Steps in one epoch when ``train.patches_per_slice`` is auto (patches of whole volumes).
STEPS_PER_EPOCH = 100
MSD_PARAMS: dict[str, Any] = {"depth": 30, "width": 1}
#: The ``train`` settings that may be ``auto``.
AUTO_FIELDS = ("epochs", "batch_size", "lr", "patch_size", "patches_per_slice", "neighbours")
PATCH = 128
LR = 2e-3
BATCH = {"cpu": 4, "cuda": 16}
NEIGHBOURS = 2


@dataclass
class Recipe:
    """The resolved settings and the reasons, one short phrase each; ``warnings``: one
    sentence each about settings given that are legal but almost surely wrong."""

    train: TrainConfig
    model: ModelConfig
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One console line: what was chosen and why."""
        t, m = self.train, self.model
        params = ", ".join(f"{k} {v}" for k, v in m.params.items() if k != "in_channels")
        patch = "whole slices" if t.patch_size is None else f"{t.patch_size} px patches x {t.patches_per_slice}"
        chans = (f"{2 * t.neighbours + 1} input channels ({t.neighbours} {t.neighbour_axis}-neighbours a side)"
                 if t.neighbours else "1 input channel")
        what = f"recipe     {m.name} ({params}), {chans}, {patch}, batch {t.batch_size}, lr {t.lr:g}"
        return what + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def recipe_model(model_cfg: ModelConfig) -> ModelConfig:
    """``model_cfg`` with the recipe's network size when it sets none (MS-D with empty ``params``)."""
    if model_cfg.name == "msd" and not {k for k in model_cfg.params if k != "in_channels"}:
        return model_cfg.model_copy(update={"params": {**MSD_PARAMS, **model_cfg.params}})
    return model_cfg


def _axis_length(volume_shape: tuple[int, int, int], axis: str) -> int:
    return int(volume_shape[{"time": 0, "channel": 1, "z": 2}[axis]])


def resolve_recipe(cfg: TrainConfig, model_cfg: ModelConfig, *, image_shape: tuple[int, int],
                   volume_shape: tuple[int, int, int], n_train: int, k: int, device_type: str = "cpu",
                   world: int = 1) -> Recipe:
    """``cfg`` and ``model_cfg`` with every ``auto`` setting chosen (explicit settings kept).

    Parameters
    ----------
    image_shape : (y, x)
        One slice.
    volume_shape : (time, channel, z)
        The stacked volumes (the neighbour axis's length sizes the neighbours).
    n_train : int
        Training images (slices of all volumes, held-out ones excluded).
    k : int
        Splits.
    device_type : {"cpu", "cuda"}
    world : int
        Training ranks (an epoch's steps are shared by them).
    """
    reasons: list[str] = []
    upd: dict[str, Any] = {}
    dev = "cuda" if device_type == "cuda" else "cpu"
    if recipe_model(model_cfg) is not model_cfg:
        model_cfg = recipe_model(model_cfg)
        reasons.append("MS-D 30 x 1 measured best per minute (foam: +0.8 dB over a U-Net)")
    if cfg.neighbours == "auto":
        n_axis = _axis_length(volume_shape, cfg.neighbour_axis)
        nb = min(NEIGHBOURS, max(0, (n_axis - 1) // 2))
        upd["neighbours"] = nb
        what = {"z": "slices", "time": "time steps", "channel": "channels"}[cfg.neighbour_axis]
        reasons.append(f"{nb} neighbours from {n_axis} {what}"
                       + (" (foam: +1.3 dB with 2)" if nb else ""))
    if cfg.patch_size == "auto":
        small = max(image_shape) <= PATCH + 32
        upd["patch_size"] = None if small else PATCH
        if small:
            reasons.append(f"whole {image_shape[0]} x {image_shape[1]} slices")
    if cfg.batch_size == "auto":
        upd["batch_size"] = BATCH[dev]
        if dev == "cuda":
            reasons.append("batch 16 on a GPU (not yet calibrated on one)")
    if cfg.lr == "auto":
        upd["lr"] = LR
    batch = int(upd.get("batch_size", cfg.batch_size))
    patch = upd.get("patch_size", cfg.patch_size)
    if cfg.patches_per_slice == "auto":
        if patch is None:
            upd["patches_per_slice"] = 1
        else:
            items = n_train * k
            upd["patches_per_slice"] = max(1, math.ceil(STEPS_PER_EPOCH * batch * world / max(items, 1)))
    reps = 1 if patch is None else int(upd.get("patches_per_slice", cfg.patches_per_slice))
    steps_per_epoch = max(1, math.ceil(n_train * k * reps / world / batch))
    if cfg.epochs == "auto":
        upd["epochs"] = max(1, math.ceil(STEPS_PLANNED / steps_per_epoch))
    warning = None if cfg.batch_size == "auto" else batch_warning(batch, n_train * k * reps // world, world)
    return Recipe(cfg.model_copy(update=upd), model_cfg, reasons, [warning] if warning else [])


def batch_warning(batch_size: int, items: int, world: int = 1) -> str | None:
    """The warning when ``batch_size`` is more than the ``items`` an epoch trains on (each
    rank's share on ``world`` ranks): every step then takes all of them (None otherwise)."""
    if batch_size <= items:
        return None
    each = " of each rank" if world > 1 else ""
    return (f"train.batch_size = {batch_size} is more than the {items} training items{each}: every step uses all "
            "of them, so an epoch is one step; leave batch_size: auto")


def budget_warning(steps_in_budget: float, minutes: float, steps_needed: int = STEPS_NEEDED,
                   seconds_per_step: float | None = None) -> str | None:
    """The warning when the budget allows fewer steps than the recipe needs (None when enough)."""
    if steps_in_budget >= steps_needed:
        return None
    need = minutes * steps_needed / max(steps_in_budget, 1.0)
    if seconds_per_step:
        need = max(need, steps_needed * seconds_per_step / 60.0)
    need_min = math.ceil(need * 1.1)
    return (f"the budget of {minutes:g} min allows about {int(steps_in_budget)} training steps; this recipe needed "
            f"about {steps_needed} on the benchmarks, so the result may be blurred or lose faint objects; give it "
            f"about {need_min} min (--set train.max_minutes={need_min}) or a GPU")
