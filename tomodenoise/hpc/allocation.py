"""The batch step of ``pipeline.sbatch``: a scan's stages up to the reconstruction on the Dask
workers of the job's own allocation, without Prefect.

``pipeline.sbatch`` starts a Dask scheduler on the job's first node and workers on every node,
then runs, in order::

    python -m tomodenoise.hpc.allocation prepare SCAN --out OUT [-c run.yaml] --job ID   # prints STORE
    python -m tomodenoise.hpc.allocation reconstruct --config JOB.yaml --address ADDR --workers N
    srun torchrun -m tomodenoise.pipeline.ddp --store STORE --config JOB.yaml --stage
    tomodenoise run SCAN --out OUT -c JOB.yaml --set compute.address=ADDR  # denoise and report
    python -m tomodenoise.hpc.allocation workers --address ADDR --n N      # (beside it) N workers joined?

``prepare`` writes the run configuration of the whole job (as ``tomodenoise run`` would build
it, with ``compute.cluster: address``) to ``<store>/report/slurm/job-<ID>/run.yaml`` and prints the
scan's store folder. ``reconstruct`` runs the core's stages (:func:`tomodenoise.pipeline.run_pipeline`,
under the store's lock) with :class:`DaskUnits`, which hands each chunked stage's units to the
workers (once ``N`` joined) and stops the pipeline before the train stage, retiring the workers: the DDP ranks train next under
``srun``, and the last ``tomodenoise run`` finds ingest, reconstruct and train complete.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from ..config import RunConfig
from ..io.store import ScanStore
from ..pipeline import Context, Plan, Sequential, Stage, run_pipeline, run_stage, stage_named, store_for

__all__ = ["DaskUnits", "Reached", "main", "run_unit"]

log = logging.getLogger("tomodenoise.hpc")


class Reached(Exception):
    """The pipeline got to the stage after ``until``: stop there (not an error)."""


def run_unit(stage: str, store_root: str, cfg: RunConfig, unit: Any, ctx: Context) -> int:
    """One unit of a chunked stage on a Dask worker; returns the chunks it wrote."""
    return stage_named(stage).run(ScanStore(store_root), cfg, unit, ctx)


class DaskUnits:
    """An executor for :func:`~tomodenoise.pipeline.run_pipeline`: the units of chunked stages
    on an existing Dask scheduler (``client``), the others here; stops (:class:`Reached`) when
    the stage after ``until`` would start."""

    def __init__(self, client: Any, until: str = "reconstruct", retries: int = 2):
        self.client, self.until, self.retries = client, until, retries
        self.reached = False

    def stage(self, stage: Stage, store: ScanStore, cfg: RunConfig, ctx: Context) -> None:
        if self.reached:
            raise Reached(stage.key)
        run_stage(stage, store, cfg, self, ctx)
        self.reached = stage.key == self.until

    def map_units(self, stage: Stage, store: ScanStore, cfg: RunConfig, plan: Plan, ctx: Context) -> None:
        if not stage.chunked:
            Sequential(progress=False).map_units(stage, store, cfg, plan, ctx)
            return
        from distributed import as_completed

        n, done = len(plan.units), plan.done
        log.info("%d of %d %s to compute in %d tasks on %d Dask workers", plan.todo, plan.total, stage.chunks_name,
                 n, len(self.client.scheduler_info()["workers"]))
        futures = self.client.map(run_unit, [stage.key] * n, [str(store.root)] * n, [cfg] * n, plan.units,
                                  [ctx.portable()] * n, pure=False, retries=self.retries)
        for fut in as_completed(futures):
            done += fut.result()
            log.info("%s: %d/%d %s", stage.key, done, plan.total, stage.chunks_name)

    def done(self, stage: Stage, store: ScanStore, ctx: Context) -> None:
        pass


def prepare(args: argparse.Namespace) -> int:
    """Write the job's run configuration to ``<store>/report/slurm/job-<ID>/run.yaml`` and print the
    scan's store folder."""
    from ..cli import build_config

    cfg = build_config(args)
    cfg.compute.cluster = "address"
    root = store_for(cfg).root
    (root / "report" / "slurm" / f"job-{args.job}").mkdir(parents=True, exist_ok=True)
    (root / "report").mkdir(exist_ok=True)
    cfg.save(root / "report" / "slurm" / f"job-{args.job}" / "run.yaml")
    print(root)
    return 0


def reconstruct(args: argparse.Namespace) -> int:
    """Ingest and reconstruct on the scheduler of the job's configuration, then stop."""
    from distributed import Client

    from .. import logs

    cfg = RunConfig.from_file(args.config)
    cfg.compute.address = args.address
    store = store_for(cfg)
    logs.configure(logs.run_log_path(store.root), logs.NORMAL)
    log.info("SLURM job %s: %s -> %s, Dask scheduler %s", _job_id(), cfg.input.path, store.root,
             cfg.compute.address)
    t0 = time.perf_counter()
    with Client(cfg.compute.address, timeout=60) as client:
        if not _joined(client, args.workers, args.timeout):
            return 1
        try:
            run_pipeline(cfg, DaskUnits(client, until=args.until), Context(), note=f"SLURM job {_job_id()}")
        except Reached as stop:
            logs.summary(log, f"stages up to {args.until} done in {time.perf_counter() - t0:.0f} s; "
                              f"{stop} next (log: {logs.run_log_path(store.root)})")
        client.retire_workers(close_workers=True)  # they give way to the training ranks
    return 0


def _joined(client: Any, n: int, timeout: float) -> bool:
    """Wait until ``n`` workers joined; say so on stderr when they did not."""
    try:
        client.wait_for_workers(n, timeout=timeout)
        return True
    except TimeoutError:
        have = len(client.scheduler_info()["workers"])
        print(f"only {have} of {n} Dask workers joined {client.scheduler.address} within {timeout:.0f} s: see the "
              "workers' log in the job's folder (<store>/report/slurm/job-<id>/workers.log)", file=sys.stderr)
        return False


def workers(args: argparse.Namespace) -> int:
    """Wait until ``--n`` workers joined the scheduler, or retire them all (``--retire``)."""
    from distributed import Client

    with Client(args.address, timeout=60) as client:
        if args.retire:
            client.retire_workers(close_workers=True)
            return 0
        return 0 if _joined(client, args.n, args.timeout) else 1


def _job_id() -> str:
    import os

    return os.environ.get("SLURM_JOB_ID", "?")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tomodenoise.hpc.allocation", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    pr = sub.add_parser("prepare", help="write the job's run configuration, print the store folder")
    pr.add_argument("scan")
    pr.add_argument("--out", required=True)
    pr.add_argument("-c", "--config")
    pr.add_argument("--set", action="append", metavar="KEY=VALUE")
    pr.add_argument("--job", required=True, help="the SLURM job id (names the job's folder)")
    pr.set_defaults(func=prepare)
    rc = sub.add_parser("reconstruct", help="ingest and reconstruct on the job's Dask workers")
    rc.add_argument("--config", required=True)
    rc.add_argument("--address", required=True, help="the job's Dask scheduler")
    rc.add_argument("--workers", type=int, default=1, help="wait until this many workers joined")
    rc.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for them")
    rc.add_argument("--until", default="reconstruct", help="the last stage to run here (default reconstruct)")
    rc.set_defaults(func=reconstruct)
    w = sub.add_parser("workers", help="wait for the job's Dask workers, or retire them")
    w.add_argument("--address", required=True)
    w.add_argument("--n", type=int, default=1)
    w.add_argument("--timeout", type=float, default=120.0)
    w.add_argument("--retire", action="store_true")
    w.set_defaults(func=workers)
    args = p.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover - run by pipeline.sbatch
    raise SystemExit(main())
