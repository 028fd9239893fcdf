"""A watch over the worker jobs of a run's SLURM cluster: what SLURM does to them, in one sentence and in bounded time.

The run's Dask cluster on SLURM (:class:`tomodenoise.cluster.DaskCluster`, ``compute.cluster: slurm``)
submits ``compute.n_workers`` jobs. Dask sees only the workers that arrive: a job that pends for ever
is a worker that never comes, and a job that ``sbatch`` refuses is an exception inside Dask's event
loop, so the run would wait for its tasks for ever. :class:`JobWatch` reads the jobs' states every
``poll`` seconds (:func:`tomodenoise.hpc.jobs.jobs`, in a thread of its own) and decides:

- a job pending for a reason that cannot clear (:data:`tomodenoise.hpc.jobs.HOPELESS`: PartitionConfig,
  PartitionTimeLimit, ...) for ``hopeless_after`` seconds: the run fails with
  ``SLURM job N pending: <Reason>: <remedy>`` (:class:`~tomodenoise.hpc.jobs.SlurmRequestError`);
- a job lost (:data:`tomodenoise.hpc.jobs.ENDED_LOST`: ``scancel``, its time limit, a node failure):
  one warning naming the job, its end state and the remedy; Dask reruns its tasks on the other
  workers and the cluster submits a replacement (``replace``, ``replace_after`` seconds later when
  Dask's own replacement has not done it); more than ``max_lost`` jobs lost: the run fails (jobs
  at their time limit are replaced without counting: Dask fails a task whose workers keep dying);
- ``sbatch`` failing, or no job ``submit_timeout`` seconds after the cluster started: the run fails.

With the defaults a failure is found within ``hopeless_after + poll`` = 20 s (pending) or
``poll`` = 5 s (sbatch, a lost job) of SLURM saying so. The run's waiting loops call
:meth:`JobWatch.check`, which raises what the watch found; the watch itself only logs (to the run
log), so that the error reaches the console once, from the CLI. :func:`watched_job_class` is the
``dask_jobqueue`` job class that tells the watch about each job it submits.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable

from . import jobs as slurm
from .jobs import ALIVE, ENDED_LOST, Job, SlurmError, SlurmRequestError, hopeless, lost_remedy

__all__ = ["JobWatch", "watched_job_class"]

log = logging.getLogger(__name__)
#: A job the controller does not list this many polls in a row counts as ended (``squeue`` can
#: miss a job while the controller is busy).
MISSING_POLLS = 3


class JobWatch:
    """The states of one cluster's worker jobs, read every ``poll`` seconds (see the module docstring).

    ``replace(worker_name, job_id)`` asks the cluster to submit a replacement for a lost job (it must
    do nothing when the cluster has replaced it already); ``read`` is :func:`tomodenoise.hpc.jobs.jobs`
    (tests give their own); ``clock`` is :func:`time.monotonic`.
    """

    def __init__(self, *, replace: Callable[[str, str], None] | None = None, poll: float = 5.0,
                 hopeless_after: float = 15.0, submit_timeout: float = 60.0, max_lost: int = 3,
                 replace_after: float = 25.0, read: Callable[[list[str]], dict[str, Job]] = slurm.jobs,
                 clock: Callable[[], float] = time.monotonic):
        self.replace, self.poll, self.hopeless_after = replace, poll, hopeless_after
        self.submit_timeout, self.max_lost, self.replace_after = submit_timeout, max_lost, replace_after
        self.read, self.clock = read, clock
        self.submitted: list[tuple[str, str]] = []  # (worker name, job id), in order
        self.lost: list[tuple[str, str]] = []  # (job id, end state)
        self.error: SlurmError | None = None
        self._active: dict[str, str] = {}  # job id -> worker name, for jobs not ended
        self._pending_since: dict[str, float] = {}
        self._missing: dict[str, int] = {}
        self._to_replace: dict[str, tuple[str, float]] = {}  # job id -> (worker name, when it was lost)
        self._said: dict[str, str] = {}  # job id -> the last state logged
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = clock()

    # what the cluster's job class reports
    def submitted_job(self, name: str, job_id: str, log_files: str | None = None) -> None:
        with self._lock:
            self.submitted.append((name, str(job_id)))
            self._active[str(job_id)] = name
        log.info("SLURM job %s (Dask worker %s) submitted%s", job_id, name,
                 f"; its output: {log_files}" if log_files else "")

    def submit_failed(self, name: str, why: str) -> None:
        self._fail(SlurmError(f"sbatch could not submit the Dask worker job {name} ({why}): no worker can start; "
                              "check that SLURM answers (`sinfo`) and your account's submission limits, "
                              "then run again"))

    # the run's side
    def check(self) -> None:
        """Raise the failure the watch found, if any (called by the run's waiting loops)."""
        if self.error is not None:
            raise self.error

    @property
    def job_ids(self) -> list[str]:
        with self._lock:
            return [jid for _, jid in self.submitted]

    def start(self) -> "JobWatch":
        self._started = self.clock()
        self._thread = threading.Thread(target=self._run, name="slurm-job-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.poll + 30)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.poll_once()
            except Exception as exc:  # a watch that dies would leave the run waiting again: keep going
                log.debug("SLURM job watch: %s", exc, exc_info=True)

    # one look at the jobs
    def poll_once(self) -> None:
        """Read the active jobs' states once and act on them (the thread calls this every ``poll`` s)."""
        now = self.clock()
        with self._lock:
            active = dict(self._active)
            anything = bool(self.submitted)
        if not anything:
            if now - self._started >= self.submit_timeout and self.error is None:
                self._fail(SlurmError(f"no SLURM job was submitted for the Dask workers within "
                                      f"{self.submit_timeout:.0f} s of the cluster's start: check that SLURM "
                                      "answers (`sinfo`, `squeue`) and the run log, then run again"))
            return
        if active:
            try:
                found = self.read(list(active))
            except (SlurmError, OSError, subprocess.SubprocessError) as exc:  # a busy controller: the next poll
                log.debug("SLURM job watch: could not read the jobs (%s)", exc)
                return
            for jid, name in active.items():
                self._look(jid, name, found.get(jid), now)
        for jid, (name, when) in list(self._to_replace.items()):
            if now - when >= self.replace_after:
                del self._to_replace[jid]
                if self.replace is not None and self.error is None:
                    self.replace(name, jid)

    def _look(self, jid: str, name: str, job: Job | None, now: float) -> None:
        if job is None:
            self._missing[jid] = self._missing.get(jid, 0) + 1
            if self._missing[jid] >= MISSING_POLLS:
                self._lose(jid, name, "gone (no longer known to SLURM)", now)
            return
        self._missing.pop(jid, None)
        state = job.state.split()[0] if job.state.strip() else job.state
        if state == "PENDING":
            remedy = hopeless(job)
            if remedy is None:
                self._pending_since.pop(jid, None)
                self._say(jid, f"PENDING ({job.reason or 'no reason given'})",
                          f"SLURM job {jid} (Dask worker {name}) pending: {job.reason or 'no reason given'}")
                return
            since = self._pending_since.setdefault(jid, now)
            self._say(jid, f"PENDING {job.reason}", f"SLURM job {jid} (Dask worker {name}) pending: {job.reason}")
            if now - since >= self.hopeless_after:
                self._fail(SlurmRequestError(f"SLURM job {jid} pending: {job.reason}: {remedy}; the run stops and "
                                             "cancels its jobs"))
        elif state in ALIVE:
            self._pending_since.pop(jid, None)
            self._say(jid, state, f"SLURM job {jid} (Dask worker {name}) {state.lower()}")
        elif state == "COMPLETED":  # the worker stopped by itself (e.g. its --lifetime): replaced, not counted
            with self._lock:
                self._active.pop(jid, None)
            log.info("SLURM job %s (Dask worker %s) completed; a new job is submitted if the run needs it", jid, name)
            self._to_replace[jid] = (name, now)
        elif state in ENDED_LOST or state in ("SPECIAL_EXIT", "REVOKED"):
            self._lose(jid, name, job.state + (f" ({job.reason})" if job.reason and state != "CANCELLED" else ""), now)

    def _lose(self, jid: str, name: str, state: str, now: float) -> None:
        """Job ``jid`` ended before the run did: a warning and a replacement, or the run's failure
        when more than ``max_lost`` jobs were lost."""
        with self._lock:
            self._active.pop(jid, None)
            self.lost.append((jid, state))
            # a job at its time limit is replaced without counting: a run longer than the walltime
            # warns each time (and Dask fails a task whose workers keep dying, KilledWorker)
            n = sum(1 for _, how in self.lost if not how.startswith("TIMEOUT"))
        self._pending_since.pop(jid, None)
        if n > self.max_lost:
            self._fail(SlurmError(f"{n} Dask worker jobs of this run ended before it did (the last: SLURM job {jid}, "
                                  f"{state}): {lost_remedy(state)}; the run stops"))
            return
        log.warning("SLURM job %s (Dask worker %s) ended %s before the run did: %s; its tasks are rerun on the other "
                    "workers and a new job is submitted", jid, name, state, lost_remedy(state))
        self._to_replace[jid] = (name, now)

    def _say(self, jid: str, key: str, text: str) -> None:
        if self._said.get(jid) != key:
            self._said[jid] = key
            log.info("%s", text)

    def _fail(self, error: SlurmError) -> None:
        if self.error is None:
            self.error = error
            log.info("SLURM job watch: %s", error)  # the CLI prints it, once


def watched_job_class(watch: JobWatch) -> type:
    """A ``dask_jobqueue.slurm.SLURMJob`` that reports each job it submits (or ``sbatch``'s refusal)
    to ``watch``; ``SLURMCluster(job_cls=...)``."""
    from dask_jobqueue.slurm import SLURMJob

    class WatchedSLURMJob(SLURMJob):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                watch.submit_failed(str(self.name), _sbatch_said(exc))
                raise
            logs = getattr(self, "log_directory", None)
            files = f"{logs}/{self.job_name or 'worker'}-{self.job_id}.out|.err" if logs else None
            watch.submitted_job(str(self.name), str(self.job_id), files)

    return WatchedSLURMJob


def _sbatch_said(exc: BaseException) -> str:
    """What sbatch said, from dask-jobqueue's multi-line error (its stderr lines), in one line."""
    text = str(exc)
    said = text.split("stderr:", 1)[1] if "stderr:" in text else text
    lines = [line.strip().removeprefix("sbatch: error: ") for line in said.splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__

