"""Which Dask cluster runs the chunked work, from ``compute`` in the run configuration.

:class:`DaskCluster` is the one cluster of a run: started from :func:`dask_runner_kwargs` when
the first chunked stage has work, shared by every chunked stage, closed at the end of the run
(the flow's executor connects a ``prefect_dask.DaskTaskRunner`` to its address; no Prefect
here, per the import rules of docs/DESIGN.md). The kinds:

- ``local``: a ``distributed.LocalCluster`` with ``n_workers`` processes (the default);
- ``local_cuda``: ``dask_cuda.LocalCUDACluster``, one worker per visible GPU; falls back to
  ``local`` (with a warning) when dask-cuda is not importable or there is no GPU;
- ``address``: an existing scheduler (``compute.address``, e.g. ``tcp://head:8786``);
- ``slurm``: ``dask_jobqueue.SLURMCluster(**compute.slurm)`` scaled to ``n_workers`` jobs. Its job
  script is checked by ``sbatch --test-only`` before any job is submitted (a script no node could
  run fails the run at once, :func:`tomodenoise.hpc.jobs.test_submit`), and its jobs are watched while
  the run lasts (:class:`tomodenoise.hpc.watch.JobWatch`: a job pending for ever fails the run, a
  lost job is replaced; :meth:`DaskCluster.check` raises what it found). The workers log into the
  run's log like local ones (:func:`slurm_prologue`); each job's own stdout and stderr go to
  ``<store>/report/slurm/<job_name>-<job id>.out|.err`` (``log_directory``), named in the run log.

Every worker this module starts keeps glibc's own memory allocator settings, as a plain process
has (:data:`NANNY_UNSET_ENV`): Dask's nanny otherwise starts each worker with
``MALLOC_TRIM_THRESHOLD_=65536``, and setting any glibc malloc threshold also fixes the mmap
threshold at 128 KiB, so every tensor of a forward pass over 128 KiB is mapped afresh and
page-faulted in; that made a network's inference about 2x slower in a worker
(``benchmarks/dask_worker_probe.py``).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import ComputeConfig
from .logs import ENV_RUN_LOG, ENV_VERBOSITY

__all__ = ["CLOSED_WHILE_TRAINING", "DaskCluster", "LOG_PRELOAD", "NANNY_UNSET_ENV", "configure_nannies", "dask_runner_kwargs", "gpu_count",
           "slurm_prologue"]

log = logging.getLogger(__name__)
LOG_PRELOAD = "tomodenoise.logs"  # Dask preload module: quiet console, the parent's run log
#: Variables of ``distributed.nanny.pre-spawn-environ`` that a nanny must not set before it
#: starts a worker (``None`` there unsets one): glibc's defaults, as in a plain process.
NANNY_UNSET_ENV = ("MALLOC_TRIM_THRESHOLD_",)
PRE_SPAWN_KEY = "distributed.nanny.pre-spawn-environ"


def configure_nannies() -> None:
    """Apply :data:`NANNY_UNSET_ENV` to Dask's configuration in this process.

    A nanny reads ``distributed.nanny.pre-spawn-environ`` from the global configuration of the
    process that creates it (no cluster keyword reaches it), so :func:`dask_runner_kwargs` calls
    this for the clusters started here; SLURM jobs get it from :func:`slurm_prologue`.
    """
    import dask

    dask.config.set({f"{PRE_SPAWN_KEY}.{name}": None for name in NANNY_UNSET_ENV})


def slurm_prologue() -> list[str]:
    """Lines of a SLURM job script that give its nanny :data:`NANNY_UNSET_ENV` (Dask reads
    ``DASK_*`` variables into its configuration when a worker job starts) and its worker this
    process's run log (:data:`tomodenoise.logs.ENV_RUN_LOG`, read by the :data:`LOG_PRELOAD`)."""
    env_name = "DASK_" + PRE_SPAWN_KEY.upper().replace(".", "__").replace("-", "_")
    value = repr({name: None for name in NANNY_UNSET_ENV})
    lines = [f'export {env_name}="{value}"',
             # each worker logs like a local one, into the run's log (tomodenoise.logs.dask_setup)
             f'export DASK_DISTRIBUTED__WORKER__PRELOAD="{[LOG_PRELOAD]!r}"']
    # the run log's settings, also where sbatch does not pass the environment on (--export=NONE)
    for name in (ENV_RUN_LOG, ENV_VERBOSITY):
        if os.environ.get(name):
            lines.append(f"export {name}={shlex.quote(os.environ[name])}")
    own = code_path()
    if own:  # the run's own code, as a local worker gets it (multiprocessing hands over sys.path)
        lines.append(f'export PYTHONPATH={shlex.quote(os.pathsep.join(own))}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    return lines


def code_path() -> list[str]:
    """This process's ``sys.path`` folders outside the Python installation and its environments:
    where a Prefect worker put the flow's own code (a deployment's entrypoint ``flows/pipeline.py``
    is loaded by path, as module ``pipeline``, with its folder and the checkout on ``sys.path``).
    A SLURM worker job is a new process on another node: without them on its ``PYTHONPATH`` it
    cannot unpickle the flow's tasks ("No module named 'pipeline'")."""
    import site
    import sysconfig

    installed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              *site.getsitepackages(), site.getusersitepackages(),
                                              *sysconfig.get_paths().values()) if p}
    own: list[str] = []
    for entry in sys.path:
        real = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(real) or real in own:
            continue
        if any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in installed):
            continue
        own.append(real)
    return own


def gpu_count() -> int:
    """GPUs this process can see (``CUDA_VISIBLE_DEVICES`` honoured), without initialising CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml  # ships with dask-cuda's dependencies

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception:
        try:
            import torch

            n = torch.cuda.device_count()
        except Exception:
            n = 0
    if visible:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return int(n)


def dask_runner_kwargs(compute: ComputeConfig) -> dict[str, Any]:
    """Keyword arguments of ``prefect_dask.DaskTaskRunner`` for this configuration."""
    kind = compute.cluster
    if kind == "address":
        if not compute.address:
            raise ValueError("compute.cluster = 'address' needs compute.address (e.g. tcp://scheduler:8786)")
        return {"address": compute.address}
    if kind == "slurm":
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ValueError("compute.cluster = 'slurm' needs dask-jobqueue") from e
        slurm = dict(compute.slurm)
        slurm["job_script_prologue"] = slurm_prologue() + list(slurm.get("job_script_prologue", []))
        return {
            "cluster_class": "dask_jobqueue.SLURMCluster",
            "cluster_kwargs": slurm,
            "adapt_kwargs": {"minimum": compute.n_workers, "maximum": compute.n_workers},
        }
    configure_nannies()  # a local cluster's nannies run in this process
    if kind == "local_cuda":
        n_gpu = gpu_count()
        try:
            import dask_cuda  # noqa: F401

            have_dask_cuda = True
        except Exception:  # ImportError, or its CUDA extra missing
            have_dask_cuda = False
        if n_gpu > 0 and have_dask_cuda:
            return {
                "cluster_class": "dask_cuda.LocalCUDACluster",
                "cluster_kwargs": {"threads_per_worker": compute.threads_per_worker, "preload": [LOG_PRELOAD]},
            }
        why = "no GPU is visible" if n_gpu == 0 else "dask-cuda is not installed (pip install 'dask-cuda[cu12]')"
        log.warning("compute.cluster = 'local_cuda' but %s: using a CPU LocalCluster", why)
    return {
        "cluster_class": "distributed.LocalCluster",
        "cluster_kwargs": {
            "n_workers": compute.n_workers,
            "threads_per_worker": compute.threads_per_worker,
            "processes": True,
            "preload": [LOG_PRELOAD],  # each worker logs like its parent (tomodenoise.logs.dask_setup)
            # Each worker runs ASTRA/NumPy single-threaded unless told otherwise, so that
            # n workers use n cores instead of fighting over them.
            "env": {"OMP_NUM_THREADS": str(compute.threads_per_worker),
                    "OPENBLAS_NUM_THREADS": str(compute.threads_per_worker),
                    "MKL_NUM_THREADS": str(compute.threads_per_worker)},
        },
    }


#: Cluster kinds closed while the network trains (and started again for the denoising), and why.
#: A SLURM cluster keeps its jobs: one allocation and one queue wait for the Dask work of a run.
#: Closing a local one costs about 2.5 s (start and close, ``python -m benchmarks idle_cluster``,
#: which also found idle workers slow the training down by nothing measurable), while idle
#: workers keep the memory their reconstruction tasks grew to (up to ``compute.task_memory``
#: each) away from the training ranks.
CLOSED_WHILE_TRAINING = {"local": "its idle workers would keep their memory from the training",
                         "local_cuda": "its workers hold the GPUs the training needs"}


class DaskCluster:
    """The one Dask cluster of a run, started on first use, closed at the end of the run (and,
    for the kinds of :data:`CLOSED_WHILE_TRAINING`, while the network trains: :meth:`pause`).

    ``compute.cluster`` names the kind (see the module docstring); ``address`` connects to an
    existing scheduler and starts nothing. All chunked stages of a run share it: on SLURM that is
    one allocation (and one queue wait) for the Dask work of a scan.
    """

    def __init__(self, compute: ComputeConfig):
        self.compute = compute
        self.cluster: Any = None
        self.watch: Any = None  # tomodenoise.hpc.watch.JobWatch of a SLURM cluster
        #: keyword arguments of the watch (poll, hopeless_after, ...: tests shorten them)
        self.watch_settings: dict[str, Any] = {}

    def address(self) -> str:
        """The scheduler's address, starting the cluster the first time."""
        if self.compute.cluster == "address":
            return dask_runner_kwargs(self.compute)["address"]
        if self.cluster is None:
            import importlib

            kw = dask_runner_kwargs(self.compute)
            if self.compute.cluster == "slurm":
                self.cluster = self._start_slurm(kw)
            else:
                module, _, name = kw["cluster_class"].rpartition(".")
                self.cluster = getattr(importlib.import_module(module), name)(**kw.get("cluster_kwargs", {}))
                if kw.get("adapt_kwargs"):
                    self.cluster.adapt(**kw["adapt_kwargs"])
            log.info("Dask cluster %s started (%s)", type(self.cluster).__name__, self.cluster.scheduler_address)
        return self.cluster.scheduler_address

    def _start_slurm(self, kw: dict[str, Any]) -> Any:
        """The SLURMCluster, its job script checked by ``sbatch --test-only`` before any job is
        submitted, its jobs watched (:class:`tomodenoise.hpc.watch.JobWatch`)."""
        from dask_jobqueue import SLURMCluster

        from .hpc.jobs import test_submit
        from .hpc.watch import JobWatch, watched_job_class

        watch = JobWatch(replace=self._replace, **self.watch_settings)
        options = dict(kw["cluster_kwargs"])
        run_log = os.environ.get(ENV_RUN_LOG)
        if run_log and "log_directory" not in options:  # the jobs' stdout and stderr beside the run log
            options["log_directory"] = str(Path(run_log).parent / "slurm")
        cluster = SLURMCluster(**options, job_cls=watched_job_class(watch))
        try:
            script = cluster.job_script()
            log.debug("the Dask worker job script:\n%s", script)
            test_submit(script)  # a script no node could ever run fails the run here, before any job
            self.watch = watch.start()
            cluster.adapt(**kw["adapt_kwargs"])
        except BaseException:
            if self.watch is not None:
                self.watch.stop()
                self.watch = None
            cluster.close()
            raise
        return cluster

    def _replace(self, name: str, job_id: str) -> None:
        """Submit a new job for worker ``name`` whose job ``job_id`` was lost (the watch asks when
        Dask has not done it itself: a worker that never reached the scheduler is not replaced)."""
        cluster = self.cluster
        if cluster is None:
            return

        def drop() -> None:  # on the cluster's event loop, which owns ``workers``
            job = cluster.workers.get(name)
            if job is not None and str(getattr(job, "job_id", "")) == job_id:
                del cluster.workers[name]
                cluster.scale(jobs=len(cluster.worker_spec))  # jobs, not workers (processes per job)

        cluster.loop.add_callback(drop)

    def check(self) -> None:
        """Raise what the watch over the cluster's SLURM jobs found (a job that cannot start, jobs
        lost again and again, sbatch failing); nothing for the other kinds. The run's waiting loops
        call this every few seconds."""
        if self.watch is not None:
            self.watch.check()

    def pause(self) -> None:
        """Before the network trains: close the cluster when its kind gives way to the training
        (:data:`CLOSED_WHILE_TRAINING`); :meth:`address` starts it again for the denoising."""
        if self.cluster is not None and self.compute.cluster in CLOSED_WHILE_TRAINING:
            log.info("closing the Dask cluster while the network trains (%s)", CLOSED_WHILE_TRAINING[self.compute.cluster])
            self.close()

    def close(self) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop()
        if self.cluster is not None:
            try:
                self.cluster.close()
            finally:
                self.cluster = None
                if watch is not None:
                    _cancel_left(watch.job_ids)


def _cancel_left(job_ids: list[str]) -> None:
    """Cancel the jobs of a closed cluster that SLURM still holds (dask-jobqueue cancels the jobs it
    knows; a job it forgot, e.g. one replaced, would otherwise wait or run on)."""
    from .hpc.jobs import ALIVE, SlurmError, cancel, jobs

    try:
        left = [j.id for j in jobs(job_ids).values() if j.state.split()[0] in ALIVE]
        if left:
            log.info("cancelling SLURM jobs %s of the closed cluster", ", ".join(left))
            cancel(left)
    except (SlurmError, OSError, subprocess.SubprocessError) as exc:
        log.warning("could not cancel the run's SLURM jobs %s (%s): cancel them with scancel", ", ".join(job_ids), exc)
