"""Running the stages: one stage (:func:`run_stage`), the whole pipeline (:func:`run_pipeline`),
and the sequential executor of the core (:class:`Sequential`).

An executor (:class:`Executor`) runs one stage with ``stage(stage, store, cfg, ctx)`` (normally
by calling :func:`run_stage`, which hands the plan's units to its ``map_units``), and
``done(stage, store, ctx)`` is told when a stage is complete (the Prefect executor publishes
the UI's artifacts there). The
Prefect/Dask executor lives in ``flows/pipeline.py``; this one runs every unit here, one
after another, with a progress bar.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from ..config import RunConfig
from ..io.store import ScanStore
from ..logs import bars_wanted, show_progress
from .keys import store_for
from .layout import Layout
from .stages import STAGES, Context, Plan, Stage, refuse_all

__all__ = ["Executor", "Sequential", "run_pipeline", "run_stage", "start_stage"]

log = logging.getLogger(__name__)


class Executor(Protocol):
    """What runs the stages: ``stage`` runs one (normally through :func:`run_stage`), ``map_units``
    runs a plan's units, ``done`` hears that a stage is complete."""

    def stage(self, stage: Stage, store: ScanStore, cfg: RunConfig, ctx: Context) -> Any: ...

    def map_units(self, stage: Stage, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context) -> None: ...

    def done(self, stage: Stage, store: ScanStore, ctx: Context) -> None: ...


def start_stage(stage: Stage, store: ScanStore, cfg: RunConfig, ctx: Context | None = None) -> Plan:
    """Plan ``stage`` and, unless it is current, start it: the units a run would execute now (for
    a notebook, a test or a benchmark that runs or times them itself)."""
    ctx = ctx if ctx is not None else Context()
    plan = stage.plan(store, cfg, ctx)
    if not plan.current:
        stage.start(store, cfg, plan, ctx)
    return plan


def run_stage(stage: Stage, store: ScanStore, cfg: RunConfig, executor: Executor, ctx: Context | None = None,
              plan: Plan | None = None) -> Plan:
    """Plan ``stage`` (unless ``plan`` is given); unless it is current: start it, run its units
    with ``executor.map_units``, finish it. Returns the plan."""
    ctx = ctx if ctx is not None else Context()
    plan = plan if plan is not None else stage.plan(store, cfg, ctx)
    if plan.current:
        log.info("%s already complete", stage.key)
    else:
        t0 = time.perf_counter()
        stage.start(store, cfg, plan, ctx)
        executor.map_units(stage, store, cfg, plan, ctx)
        stage.finish(store, cfg, plan, ctx, time.perf_counter() - t0)
    return plan


class Sequential:
    """Every unit in this process, one after another (the same units the flow runs in parallel)."""

    def __init__(self, progress: bool = True):
        self.progress = progress

    def stage(self, stage: Stage, store: ScanStore, cfg: RunConfig, ctx: Context) -> None:
        run_stage(stage, store, cfg, self, ctx)

    def map_units(self, stage: Stage, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context) -> None:
        from tqdm.auto import tqdm

        wanted = stage.chunked and self.progress and cfg.train.progress and show_progress() and bars_wanted()
        with tqdm(total=plan.total, initial=plan.done, desc=stage.key, unit="chunk", disable=not wanted) as bar:
            for unit in plan.units:
                bar.update(stage.run(store, cfg, unit, ctx))

    def done(self, stage: Stage, store: ScanStore, ctx: Context) -> None:
        pass


def run_pipeline(cfg: RunConfig, executor: Executor | None = None, ctx: Context | None = None, *, note: str = "",
                 on_wait: Any = None) -> ScanStore:
    """Every stage of :data:`STAGES` on ``executor`` (default :class:`Sequential`), under the
    store's lock, each stage's summary line logged; resumes completed stages and chunks."""
    from ..lock import store_lock
    from ..summary import log_stage

    executor = executor if executor is not None else Sequential()
    ctx = ctx if ctx is not None else Context()
    store = store_for(cfg)
    STAGES[0].plan(store, cfg, ctx)  # ingest reads and checks the scan: bad input is refused before a lock or store
    with store_lock(store.root, note=note, on_wait=on_wait):  # on_wait: whom the run waits for

        for stage in STAGES:
            t0 = time.time()
            executor.stage(stage, store, cfg, ctx)
            log_stage(store, stage.key, None if stage.key == "report" else t0)
            try:
                stage.after(store, cfg, ctx)
            finally:  # the UI hears of a complete stage even when its after step fails (an export)
                executor.done(stage, store, ctx)
            if stage.key == "ingest":  # a rerun: what later stages would refuse, before they write
                refuse_all(store, cfg, Layout.of_store(store), ctx)
    return store
