"""The pipeline as Prefect flows; each stage is a subflow so the UI shows its progress.

``pipeline_flow`` is what the deployments run. Its parameters are the UI's form: ``scan``
(the scan path, confined to ``TOMODENOISE_INPUT_ROOTS`` on the worker), ``overrides``
(nested configuration values, e.g. ``{"train": {"epochs": 5}}``), ``config`` (the whole
configuration; the deployment's default) and ``reference`` (a clean volume, simulations).
"""

from __future__ import annotations

import glob
import os
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm.auto import tqdm

from tasks.artifacts import ChunkProgress, run_logger
from tasks.artifacts import publish_centre_preview
from tasks.stages import (
    denoise_shard_task,
    finish_denoise_task,
    finish_reconstruct_task,
    ingest_task,
    plan_denoise_task,
    plan_reconstruct_task,
    reconstruct_group_task,
    report_task,
    train_task,
)
from tomodenoise import pipeline
from tomodenoise.cluster import dask_runner_kwargs
from tomodenoise.config import ComputeConfig, RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.lock import store_lock
from tomodenoise.logs import bars_wanted, run_log_path, run_log_to
from tomodenoise.preview import store_preview
from tomodenoise.summary import log_stage
from tomodenoise.watch import STOPPED_BY_SIGTERM
from tomodenoise.paths import PathNotAllowed, confine, input_roots, output_roots


def task_runner_for(compute: ComputeConfig):
    """The task runner of the chunked stages: Dask (``compute.cluster``) or threads."""
    if compute.cluster == "threads":
        return ThreadPoolTaskRunner(max_workers=compute.n_workers)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(**dask_runner_kwargs(compute))


def _cancel_if_terminated(flow, flow_run, state) -> None:
    """A run stopped by SIGTERM (SLURM's time limit or ``scancel``, ``timeout``, a shutdown) or
    Ctrl-C was cancelled, not crashed: say so in the UI. Its checkpoint and chunks are kept."""
    why = state.message or ""
    if "termination signal" in why:
        message = f"{STOPPED_BY_SIGTERM}; run it again to resume"
    elif "interrupt signal" in why:  # Ctrl-C: a person stopped it
        message = "stopped by an interrupt (Ctrl-C); run it again to resume"
    else:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelled(message=message), force=True)
    except Exception as exc:  # the server may be going away too
        run_logger(__name__).warning("could not mark the run cancelled: %s", exc)


@flow(name="ingest", on_crashed=[_cancel_if_terminated])
def ingest_flow(config: RunConfig) -> str:
    """Read, flat/dark-correct and -log the scan; find the centre; write the sinogram store."""
    return ingest_task(config)


@flow(name="reconstruct", on_crashed=[_cancel_if_terminated])
def reconstruct_flow(config: RunConfig, store_root: str) -> str:
    """The reconstructions of every (split, time, channel, z-slab) chunk, in parallel on the task runner.

    The chunks are grouped into tasks by work (``compute.tasks_per_worker`` tasks per worker,
    at most ``compute.task_memory`` each): one task per group. Chunks written by an earlier,
    interrupted run with the same input and settings are not computed again; the stage is
    marked complete only when every chunk is in the store.
    """
    logger = get_run_logger()
    store = ScanStore(store_root)
    if pipeline.reconstruct_current(store, config):
        logger.info("reconstruction already complete")
        return store_root
    t0 = time.perf_counter()
    total = len(pipeline.recon_chunks(store, config))
    groups = plan_reconstruct_task(store_root, config)
    todo = sum(len(g) for g in groups)
    logger.info("%d of %d reconstruction chunks to compute in %d tasks (%s)", todo, total, len(groups),
                config.compute.cluster)
    progress = ChunkProgress(total, "reconstruction chunks")  # a progress artifact in the UI
    if total > todo:
        progress.advance(total - todo)
    futures = [reconstruct_group_task.submit(store_root, config, g) for g in groups]
    _log_dashboard(logger)
    done = total - todo
    with tqdm(total=total, initial=done, desc="reconstruct", unit="chunk", dynamic_ncols=True,
              disable=not (config.train.progress and bars_wanted())) as bar:
        for i, fut in enumerate(as_completed(futures), 1):
            n = len(fut.result())  # chunks of the group: the artifact and the bar count chunks
            done += n
            progress.advance(n)
            bar.update(n)
            logger.info("reconstructed %d/%d chunks (%d/%d tasks)", done, total, i, len(futures))
    finish_reconstruct_task(store_root, config, time.perf_counter() - t0)
    return store_root


def _log_dashboard(logger) -> None:
    """Put the Dask dashboard's address in the run's log (the UI shows it)."""
    try:
        from prefect.context import FlowRunContext

        runner = FlowRunContext.get().task_runner
        client = getattr(runner, "client", None) or getattr(runner, "_client", None)
        if client is not None and getattr(client, "dashboard_link", None):
            logger.info("Dask dashboard: %s", client.dashboard_link)
    except Exception:  # no Dask (threads) or no dashboard: nothing to show
        pass


@flow(name="train", on_crashed=[_cancel_if_terminated])
def train_flow(config: RunConfig, store_root: str) -> str:
    """Noise2Inverse training on the split reconstructions; returns the best checkpoint."""
    return train_task(store_root, config)


@flow(name="denoise", on_crashed=[_cancel_if_terminated])
def denoise_flow(config: RunConfig, store_root: str, checkpoint: str | None = None) -> str:
    """Leave-one-out inference over all slices, in shards run in parallel on the task runner.

    A shard is a group of whole chunks of ``denoised`` (time step, channel, z-slab); each worker
    loads the network once. Chunks written by an earlier, interrupted run with the same
    settings are not computed again; the stage is marked complete only when every chunk is in
    the store.
    """
    logger = get_run_logger()
    store = ScanStore(store_root)
    if pipeline.denoise_current(store, config):
        logger.info("denoising already complete")
        return store_root
    t0 = time.perf_counter()
    total = len(pipeline.denoise_chunks(store))
    shards = plan_denoise_task(store_root, config, checkpoint)
    todo = sum(len(s.chunks) for s in shards)
    logger.info("%d of %d denoise chunks to compute in %d shards (%s)", todo, total, len(shards),
                config.compute.cluster)
    progress = ChunkProgress(total, "denoised chunks")  # a progress artifact in the UI
    if total > todo:
        progress.advance(total - todo)
    futures = [denoise_shard_task.submit(store_root, config, s, checkpoint) for s in shards]
    _log_dashboard(logger)
    done = total - todo
    with tqdm(total=total, initial=done, desc="denoise", unit="chunk", dynamic_ncols=True,
              disable=not (config.train.progress and bars_wanted())) as bar:
        for fut in as_completed(futures):
            n = len(fut.result().chunks)
            done += n
            progress.advance(n)
            bar.update(n)
            logger.info("denoised %d/%d chunks", done, total)
    finish_denoise_task(store_root, config, time.perf_counter() - t0)
    return store_root


def _refuse_root_overrides() -> None:
    """A run may not bring its own ``TOMODENOISE_*`` environment (its job variables).

    The roots come from the deployment and the worker; a caller of ``create_flow_run`` can add
    per-run ``job_variables``, which the process worker would put in the run's environment.
    """
    from prefect.runtime import flow_run

    jv = flow_run.job_variables or {}
    env = jv.get("env") if isinstance(jv, dict) else None
    bad = sorted(k for k in (env or {}) if str(k).upper().startswith("TOMODENOISE_"))
    if bad:
        raise PathNotAllowed(f"this run's job variables set {', '.join(bad)}: roots are set by the deployment only")


# Settings a run may not change once the service confines paths: they name other machines or
# run shell commands (SLURM job prologues), so they belong to the deployment's configuration.
_DEPLOYMENT_ONLY = (("compute", "slurm"), ("compute", "address"))


def resolve_config(config: RunConfig | None = None, scan: str | None = None,
                   overrides: dict[str, Any] | None = None) -> RunConfig:
    """The run's configuration from the flow's parameters, every path confined to its roots.

    With ``TOMODENOISE_INPUT_ROOTS`` / ``TOMODENOISE_OUTPUT_ROOTS`` set (the service), the scan,
    ``input.angles_file``, ``train.resume`` and ``output.root`` must lie inside them, and the
    overrides may not set ``compute.slurm`` or ``compute.address``.
    """
    roots_in, roots_out = input_roots(), output_roots()
    if (roots_in or roots_out) and overrides:
        for section, key in _DEPLOYMENT_ONLY:
            if key in (overrides.get(section) or {}):
                raise PathNotAllowed(f"{section}.{key} is set by the deployment, not per run")
    cfg = (config or RunConfig()).with_overrides(overrides)
    if scan:
        cfg.input.path = scan
    if not cfg.input.path:
        raise ValueError("no scan given: set the `scan` parameter (or config.input.path)")
    for key in ("path", "angles_file", "flats", "darks"):  # the scan and the files read beside it
        value = getattr(cfg.input, key)
        if value:
            pattern = str(confine(value, roots_in))
            setattr(cfg.input, key, pattern)
            if roots_in:  # each file a glob or folder names: a symlink in it may lead out of the roots
                names = glob.glob(pattern) if any(ch in pattern for ch in "*?[") else [pattern]
                for name in names:
                    confine(name, roots_in)
                    if os.path.isdir(name):
                        for entry in os.scandir(name):
                            confine(entry.path, roots_in)
    if roots_out:
        cfg.output.root = str(confine(cfg.output.root, roots_out, what="output"))
    for key in ("resume", "init_from"):  # checkpoints read by the training
        if getattr(cfg.train, key) and (roots_in or roots_out):
            setattr(cfg.train, key, str(confine(getattr(cfg.train, key), roots_in + roots_out, what="input or output")))
    return cfg


@flow(name="tomodenoise-pipeline", log_prints=True, on_crashed=[_cancel_if_terminated])
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
    _refuse_root_overrides()
    cfg = resolve_config(config, scan, overrides)
    if reference:
        roots = input_roots() + output_roots()
        reference = str(confine(reference, roots, what="input or output")) if roots else reference
    target = str(pipeline.store_for(cfg).root)
    logger = get_run_logger()
    logger.info("scan %s -> %s", cfg.input.path, target)
    from prefect.runtime import flow_run

    with run_log_to(run_log_path(target)), store_lock(target, note=f"flow run {flow_run.id}", on_wait=logger.warning):
        t0 = time.time()
        store_root = ingest_flow(cfg)
        store = ScanStore(store_root)
        log_stage(store, "ingest", t0)
        publish_centre_preview(store_preview(store, cfg))  # the first artifact: the centre, before the long work
        t0 = time.time()
        reconstruct_flow.with_options(task_runner=task_runner_for(cfg.compute))(cfg, store_root)
        log_stage(store, "reconstruct", t0)
        t0 = time.time()
        checkpoint = train_flow(cfg, store_root)
        log_stage(store, "train", t0)
        t0 = time.time()
        denoise_flow.with_options(task_runner=task_runner_for(cfg.compute))(cfg, store_root, checkpoint)
        log_stage(store, "denoise", t0)
        metrics = report_task(store_root, cfg, reference)
        log_stage(store, "report")
        if cfg.output.export:
            from tomodenoise.export import export

            export(store_root, cfg.output.export)
    return {"store": store_root, "metrics": metrics}
