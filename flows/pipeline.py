"""The pipeline as a Prefect flow: the core's stages (:data:`tomodenoise.pipeline.STAGES`) on
Prefect and Dask, each stage a subflow so that the UI shows its progress.

``pipeline_flow`` is what the deployments run: confine the paths, make the executor, run.
Its parameters are the UI's form: ``scan`` (the scan path, confined to
``TOMODENOISE_INPUT_ROOTS`` on the worker), ``overrides`` (nested configuration values, e.g.
``{"train": {"epochs": 5}}``), ``config`` (the whole configuration; the deployment's default)
and ``reference`` (a clean volume, simulations).

:class:`PrefectExecutor` runs the units of the chunked stages (reconstruct, denoise) as tasks
on the run's one Dask cluster (``compute.cluster``), started when the first chunked stage has
work: a SLURM cluster keeps its jobs until the run ends (one allocation for the Dask work of a
run), a local one gives way while the network trains and is started again to denoise
(:data:`tomodenoise.cluster.CLOSED_WHILE_TRAINING`). While it waits for the tasks it looks at the
cluster every few seconds (:func:`completed`): a SLURM job that cannot start, or workers lost again
and again, end the run with SLURM's reason instead of a wait for ever.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from tqdm.auto import tqdm

from tasks.artifacts import ChunkProgress, publish_centre_preview, publish_report
from tasks.stages import TrainProgress, cancel_if_terminated, passing_failure, refuse_root_overrides, run_unit
from tomodenoise.cluster import DaskCluster
from tomodenoise.config import RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.logs import bars_wanted, run_log_path, run_log_to
from tomodenoise.paths import confined_config, confined_reference
from tomodenoise.pipeline import Context, Plan, Stage, run_pipeline, run_stage, stage_named, store_for


class PrefectExecutor:
    """Each stage a subflow; units of chunked stages as tasks on the run's one cluster."""

    def __init__(self, cfg: RunConfig):
        self.compute = cfg.compute
        self.cluster = DaskCluster(cfg.compute)

    def __enter__(self) -> "PrefectExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cluster.close()

    def stage(self, stage: Stage, store: ScanStore, cfg: RunConfig, ctx: Context, **call: Any) -> Any:
        """``stage`` as a subflow named by its key (``call``: e.g. ``return_state=True``)."""
        plan = stage.plan(store, cfg, ctx)
        if stage.key == "train" and plan.units:
            self.cluster.pause()  # local workers give their memory and GPUs to the training
        runner = self._runner() if stage.chunked and plan.units else None
        subflow = flow(_stage_body, name=stage.key, on_crashed=[cancel_if_terminated])
        token = uuid.uuid4().hex  # the executor, context and plan stay here: the flow's context goes to the workers
        _RUNNING[token] = (self, ctx, plan)
        try:
            return (subflow.with_options(task_runner=runner) if runner else subflow)(cfg, str(store.root), stage.key,
                                                                                      token, **call)
        finally:
            _RUNNING.pop(token, None)

    def _runner(self):
        if self.compute.cluster == "threads":
            from prefect.task_runners import ThreadPoolTaskRunner

            return ThreadPoolTaskRunner(max_workers=self.compute.n_workers)
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=self.cluster.address())

    def map_units(self, stage: Stage, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context) -> None:
        if not stage.chunked:  # one unit, here (train reports its progress to the UI)
            if stage.key == "train":
                ctx.on_epoch = TrainProgress()
            unit = plan.units[0]
            task(lambda: stage.run(store, cfg, unit, ctx), name=stage.task_name, cache_policy=NO_CACHE,
                 retries=stage.retries, retry_delay_seconds=5, retry_condition_fn=passing_failure)()
            if isinstance(ctx.on_epoch, TrainProgress):
                ctx.on_epoch.close()
            return
        logger = get_run_logger()
        logger.info("%d of %d %s to compute in %d tasks (%s)", plan.todo, plan.total, stage.chunks_name,
                    len(plan.units), self.compute.cluster)
        progress = ChunkProgress(plan.total, stage.chunks_name)  # a progress artifact in the UI
        progress.advance(plan.done)
        unit_ctx = ctx.portable()
        futures = [run_unit.with_options(name=stage.task_name, task_run_name=unit.name, retries=stage.retries)
                   .submit(stage.key, str(store.root), cfg, unit, unit_ctx) for unit in plan.units]
        _log_dashboard(logger)
        done = plan.done
        with tqdm(total=plan.total, initial=done, desc=stage.key, unit="chunk", dynamic_ncols=True,
                  disable=not (cfg.train.progress and bars_wanted())) as bar:
            for fut in completed(futures, self.cluster.check):
                n = fut.result()
                done += n
                progress.advance(n)
                bar.update(n)
                logger.info("%s: %d/%d %s", stage.key, done, plan.total, stage.chunks_name)

    def done(self, stage: Stage, store: ScanStore, ctx: Context) -> None:
        if stage.key == "ingest":
            publish_centre_preview(ctx.preview)  # the first artifact: the centre, before the long work
        elif stage.key == "report":
            publish_report(str(store.root))  # report-<scan-id> (Markdown, previews embedded), store-<scan-id>


_RUNNING: dict[str, tuple[PrefectExecutor, Context, Plan]] = {}
#: Seconds between two looks at the cluster (:meth:`DaskCluster.check`) while no task completes.
CHECK_EVERY = 2.0


def completed(futures: list[Any], check: Callable[[], None], every: float = CHECK_EVERY) -> Iterator[Any]:
    """``futures`` as they complete (Prefect's ``as_completed``), calling ``check()`` every ``every``
    seconds meanwhile: a cluster that cannot run them (a SLURM job that cannot start, workers lost
    again and again) raises its error here instead of the run waiting for ever."""
    done: queue.Queue = queue.Queue()
    for fut in futures:
        fut.add_done_callback(done.put)
    for _ in range(len(futures)):
        while True:
            check()
            try:
                yield done.get(timeout=every)
                break
            except queue.Empty:
                continue


def _log_dashboard(logger: Any) -> None:
    """Put the Dask dashboard's address in the run's log (the UI shows it); none for threads."""
    from prefect.context import FlowRunContext

    runner = FlowRunContext.get().task_runner
    client = getattr(runner, "client", None) or getattr(runner, "_client", None)
    link = getattr(client, "dashboard_link", None)
    if link:
        logger.info("Dask dashboard: %s", link)


def _stage_body(config: RunConfig, store_root: str, stage: str, token: str) -> str:
    """A stage's subflow: plan (already made), start, the units on the executor, finish."""
    executor, ctx, plan = _RUNNING[token]
    run_stage(stage_named(stage), ScanStore(store_root), config, executor, ctx, plan=plan)
    return store_root


@flow(name="tomodenoise-pipeline", log_prints=True, on_crashed=[cancel_if_terminated])
def pipeline_flow(
    scan: str | None = None,
    overrides: dict[str, Any] | None = None,
    config: RunConfig | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """The whole pipeline: ingest -> reconstruct -> train -> denoise -> report.

    ``scan``: path of the scan (HDF5, NeXus, TIFF folder, .npy/.zarr); ``overrides``: nested
    configuration values merged over ``config``; ``reference``: optional ``.npy`` clean
    volume (z, y, x) for PSNR/SSIM.
    """
    refuse_root_overrides()
    cfg = confined_config(config, scan, overrides)
    ctx = Context(reference=confined_reference(reference))
    target = store_for(cfg).root
    logger = get_run_logger()
    logger.info("scan %s -> %s", cfg.input.path, target)
    with run_log_to(run_log_path(target)), PrefectExecutor(cfg) as executor:
        store = run_pipeline(cfg, executor, ctx, note=f"flow run {flow_run.id}", on_wait=logger.warning)
    return {"store": str(store.root), "metrics": ctx.metrics}

