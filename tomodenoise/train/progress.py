"""What a training run shows while it runs: a progress bar on a terminal (its share of the
budget or of the planned steps), a few plain lines elsewhere (no ``\\r`` frames in log files),
and, after a short warm-up, whether the time budget allows the steps the recipe needs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm.auto import tqdm

from tomodenoise.logs import summary
from tomodenoise.train.recipe import STEPS_NEEDED, budget_warning
from tomodenoise.train.schedule import Budget

__all__ = ["TrainingProgress", "format_loss"]

log = logging.getLogger("tomodenoise.train")

#: Steps timed after the first one (which carries the start-up costs) before the budget check.
PROBE_STEPS = 20


def format_loss(v: float | None) -> str:
    """A loss for people: four significant digits, ``-`` when there is none yet."""
    return "-" if v is None else f"{v:.4g}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    m, s_ = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s_:02d}" if m >= 60 else f"{m}:{s_:02d}"


class TrainingProgress:
    """The bar, the plain progress lines and the budget check of one training run (rank 0).

    Parameters
    ----------
    total_steps : int
        Steps planned (epochs x steps per epoch).
    step : int
        Steps done before (a resumed run).
    budget : Budget
        The run's time budget.
    minutes : float
        ``train.max_minutes`` in effect (for the messages).
    enabled : bool
        Show progress (rank 0, ``train.progress``).
    warn : bool
        Log the budget warning (rank 0, whatever ``train.progress`` says).
    steps_needed : int
        Steps the recipe needs (:data:`~tomodenoise.train.recipe.STEPS_NEEDED`).
    """

    def __init__(self, total_steps: int, step: int, budget: Budget, minutes: float, enabled: bool,
                 steps_needed: int = STEPS_NEEDED, stream: Any = None, warn: bool | None = None) -> None:
        self.total, self.budget, self.minutes, self.enabled = int(total_steps), budget, float(minutes), enabled
        self.warn = enabled if warn is None else warn
        stream = stream or sys.stderr
        self.tty = bool(enabled and getattr(stream, "isatty", lambda: False)())
        self.bar = tqdm(total=self.total, initial=min(step, self.total), desc="N2I training", unit="step",
                        disable=not self.tty, dynamic_ncols=True, mininterval=0.5, file=stream,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}{postfix}]")
        self.step0 = step
        self.t_first: float | None = None
        self.next_line = 0.2
        self.check: dict[str, Any] = {"minutes": self.minutes, "steps_needed": int(steps_needed),
                                      "steps_planned": self.total, "steps_in_budget": None,
                                      "seconds_per_step": None, "short": None, "warning": None}

    def share(self, step: int) -> float:
        """The run's progress in [0, 1]: of the planned steps, or of the time budget when that ends it first."""
        p = step / max(self.total, 1)
        if self.budget.seconds:
            p = max(p, self.budget.elapsed / self.budget.seconds)
        return min(p, 1.0)

    def _probe(self, step: int) -> None:
        now = self.budget.clock()
        if self.t_first is None:
            self.t_first = now
            return
        done = step - self.step0 - 1
        if self.check["steps_in_budget"] is not None or done < 1:
            return
        early = self.budget.seconds and done >= 3 and now - self.t_first >= 0.1 * self.budget.seconds
        if done < PROBE_STEPS and not early:
            return
        pace = (now - self.t_first) / done
        left = self.budget.left()
        possible = self.total if left is None else min(self.total, step + int(0.95 * left / max(pace, 1e-9)))
        self.check.update(steps_in_budget=int(possible), seconds_per_step=round(pace, 4))
        self.check["short"] = possible < self.check["steps_needed"]
        if self.check["short"]:
            if left is not None and possible < self.total:
                msg = budget_warning(possible, self.minutes, self.check["steps_needed"], pace)
            else:
                msg = (f"train.epochs allows {self.total} steps; this recipe needed about "
                       f"{self.check['steps_needed']} on the benchmarks: raise train.epochs (or leave it auto)")
            self.check["warning"] = msg
            if self.warn:
                self.bar.clear()
                log.warning("%s", msg)

    def update(self, step: int, epoch: int, epochs: int, train_loss: float, best: str) -> None:
        """After each step."""
        self._probe(step)
        share = self.share(step)
        if self.tty:
            est = int(round(step / share)) if share > 0 else self.total
            self.bar.total = max(step, min(self.total, est))
            self.bar.update(step - self.bar.n)
            what = "budget" if self.budget.seconds and est < self.total else "planned steps"
            self.bar.set_postfix_str(f"{100 * share:.0f}% of the {what}, epoch {epoch}/{epochs}, train "
                                     f"{train_loss:.4g}, best {best}, {_clock(self.budget.left())} left",
                                     refresh=False)
        elif self.enabled and share >= self.next_line:
            self.next_line = (int(share * 5) + 1) / 5
            summary(log, f"training   {100 * share:.0f}% ({step} steps, epoch {epoch}), train loss {train_loss:.4g}, "
                         f"best held-out {best}, {_clock(self.budget.left())} left")

    def close(self, step: int, stopped: str) -> dict[str, Any]:
        """Close the bar; the budget check with the steps actually done (``stopped``: why training
        ended: ``max_minutes``, ``epochs``, ``early_stopping`` or ``interrupted``)."""
        self.bar.close()
        self.check["steps"] = int(step)
        if stopped in ("max_minutes", "epochs") and step < self.check["steps_needed"]:
            self.check["short"] = True
            if not self.check["warning"]:  # the run ended before the pace was known: say it now
                self.check["warning"] = (
                    budget_warning(step, self.minutes, self.check["steps_needed"]) if stopped == "max_minutes" else
                    f"train.epochs allowed {step} steps; this recipe needed about {self.check['steps_needed']} on "
                    "the benchmarks: raise train.epochs (or leave it auto)")
                if self.warn:
                    log.warning("%s", self.check["warning"])
        elif self.check["short"] is None:
            self.check["short"] = False
        return dict(self.check)
