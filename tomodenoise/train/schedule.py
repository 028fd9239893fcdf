"""When training changes pace and when it stops: learning-rate schedules, the time budget, early stopping.

A schedule is a function of the run's *progress* in [0, 1]: the fraction of steps done, or,
once the pace shows that the steps will not fit in ``train.max_minutes``, the fraction of the
time budget used (:class:`Budget`). The schedule (warm-up, then the decay to a small learning
rate) thus ends when the budget does, whichever of steps and time runs out first; no
resuming with a new schedule is needed, and a run the budget does not cut is reproducible.

Schedules (``train.schedule``):

- ``cosine``: linear warm-up over ``warmup`` of the run from ``final`` x lr to lr, then a
  cosine decay to ``final`` x lr;
- ``onecycle``: Smith's one-cycle policy as in ``torch.optim.lr_scheduler.OneCycleLR``:
  cosine warm-up over 30 % from lr/25 to lr, cosine decay to lr/1e4;
- ``constant``: lr throughout (the reference implementation's choice).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

SCHEDULES = ("cosine", "onecycle", "constant")
ScheduleKind = Literal["cosine", "onecycle", "constant"]

#: ``train.max_minutes`` when it is not set: a default run ends in a predictable time.
DEFAULT_MINUTES = {"cpu": 10.0, "cuda": 60.0}


def default_minutes(device_type: str) -> float:
    """The time budget of a run that sets no ``train.max_minutes``, by device type."""
    return DEFAULT_MINUTES.get(device_type, DEFAULT_MINUTES["cpu"])


def lr_factor(kind: str, progress: float, warmup: float = 0.05, final: float = 0.01) -> float:
    """The learning rate's multiplier at ``progress`` in [0, 1] (clipped) for schedule ``kind``."""
    p = min(max(float(progress), 0.0), 1.0)
    if kind == "constant":
        return 1.0
    if kind == "onecycle":
        w, start, end = 0.3, 1.0 / 25.0, 1e-4
        if p < w:
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * p / w))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * (p - w) / (1.0 - w)))
    if kind == "cosine":
        w = min(max(warmup, 0.0), 0.5)
        if w > 0 and p < w:
            return final + (1.0 - final) * p / w
        q = (p - w) / (1.0 - w) if w < 1 else 1.0
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * q))
    raise ValueError(f"unknown learning-rate schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")


@dataclass
class Budget:
    """The run's steps and wall-clock seconds, and how much of them is used.

    Progress is the fraction of steps done, so a run is reproducible, until the time budget
    binds: from :data:`PROBE_STEPS` steps on, when the pace so far says the steps will not
    all fit in the budget, progress follows the clock instead (never going back).
    ``clock`` (default :func:`time.monotonic`) may be one that stops while a benchmark scores
    the model, so that scoring does not eat the budget.
    """

    total_steps: int
    seconds: float | None = None
    started: float | None = None
    timed: bool = False
    clock: Callable[[], float] = time.monotonic
    _last: float = 0.0

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    PROBE_STEPS = 20

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self, steps_done: int) -> float:
        """The step fraction, or the time fraction once the budget binds; in [0, 1]."""
        p = steps_done / max(self.total_steps, 1)
        if self.seconds and not self.timed and steps_done >= self.PROBE_STEPS:
            self.timed = self.elapsed / steps_done * self.total_steps > self.seconds
        if self.timed:
            p = max(p, self.elapsed / self.seconds)
        self._last = max(self._last, min(p, 1.0))
        return self._last

    def expired(self) -> bool:
        return bool(self.seconds) and self.elapsed >= self.seconds

    def left(self) -> float | None:
        """Seconds left in the time budget (None without one)."""
        return None if not self.seconds else max(0.0, self.seconds - self.elapsed)


@dataclass
class EarlyStopping:
    """Stop when the monitored loss has not improved by ``min_delta`` (relative) for ``patience`` epochs.

    ``patience`` 0 never stops. ``best`` and ``best_epoch`` may be restored from a checkpoint.
    """

    patience: int
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0

    def improved(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; True when it is the best so far."""
        if self.best is None or value < self.best - abs(self.best) * self.min_delta:
            self.best, self.best_epoch = float(value), int(epoch)
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and self.best_epoch > 0 and epoch - self.best_epoch >= self.patience
