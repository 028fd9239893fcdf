"""What SLURM says about a job script or a job, in one sentence with its remedy.

The primitives the SLURM paths share (the run's Dask worker jobs, ``tomodenoise`` submitting
``deploy/slurm/*.sbatch``): :func:`test_submit` asks ``sbatch --test-only`` whether a job
script could ever start (an invalid gres, more CPUs, memory or GPUs than any node has) before
anything is submitted; :func:`jobs` reads ``squeue``/``scontrol`` for the states and reasons of
submitted jobs; :func:`hopeless` names the pending reasons that cannot clear by waiting.
No accounting database is assumed (``sacct`` is often absent or slow): an ended job is read
with ``scontrol show job`` while the controller still holds it (``MinJobAge``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["ALIVE", "ENDED_LOST", "HOPELESS", "LOST_REMEDY", "Job", "SlurmError", "SlurmRequestError", "cancel", "hopeless",
           "job_state", "jobs", "lost_remedy", "test_submit"]

#: Pending reasons that waiting cannot clear, with what to do about each. (Not ReqNodeNotAvail:
#: at facilities it is the usual passing reason before a maintenance reservation or while a node
#: reboots; such jobs start later.)
HOPELESS = {
    "PartitionConfig": "the request exceeds the partition's limits or any node of it (CPUs, memory, GPUs); "
                       "ask for less or choose another partition",
    "PartitionNodeLimit": "the job asks for more nodes than the partition allows; ask for fewer nodes",
    "PartitionTimeLimit": "the time limit exceeds the partition's MaxTime; ask for a shorter walltime",
    "PartitionDown": "the partition is down; ask the site, or choose another partition",
    "PartitionInactive": "the partition is inactive; ask the site, or choose another partition",
    "BadConstraints": "no node has the requested features (--constraint); change the request",
    "InvalidAccount": "the account is not valid here; set compute.slurm.account (#SBATCH -A)",
    "InvalidQOS": "the QOS is not valid here; set or drop --qos",
    "QOSMaxCpuPerJobLimit": "the job asks for more CPUs than its QOS allows per job; ask for fewer",
    "QOSMaxGRESPerJob": "the job asks for more GPUs than its QOS allows per job; ask for fewer",
    "QOSMaxMemoryPerJob": "the job asks for more memory than its QOS allows per job; ask for less",
    "QOSMaxWallDurationPerJobLimit": "the walltime exceeds its QOS's limit; ask for a shorter walltime",
    "DependencyNeverSatisfied": "the job depends on a job that failed; cancel it",
}
#: States of a job that has not ended (pending, held, running or finishing), per squeue(1).
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING",
         "STAGE_OUT", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT")
#: End states of a job that was lost (not a job that ended by itself).
ENDED_LOST = ("CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
#: What to do when a job ended in one of :data:`ENDED_LOST` (its state's first word).
LOST_REMEDY = {
    "CANCELLED": "it was cancelled (scancel, or the site); nothing to change unless it happens again",
    "TIMEOUT": "it reached its time limit: ask for a longer walltime (compute.slurm.walltime)",
    "DEADLINE": "it reached its deadline: ask for a later --deadline or a shorter walltime",
    "NODE_FAIL": "its node failed; if it happens again, ask the site or exclude the node",
    "BOOT_FAIL": "its node failed to boot; if it happens again, ask the site",
    "PREEMPTED": "a job of higher priority took its node: choose a partition or QOS without preemption",
    "OUT_OF_MEMORY": "it ran out of memory: ask for more (compute.slurm.memory) or lower compute.task_memory",
    "FAILED": "it exited with an error: its log (above) says why",
}


class SlurmError(RuntimeError):
    """SLURM refused or cannot run a job; the message is one sentence with the remedy."""


class SlurmRequestError(SlurmError, ValueError):
    """The request itself is at fault (a job script SLURM refuses, a job pending for a reason that
    cannot clear): a configuration error, like the other :class:`ValueError` s (CLI exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One job as the controller sees it: ``state`` (PENDING, RUNNING, CANCELLED, TIMEOUT, ...),
    ``reason`` (a pending reason, or why it ended; ``None`` when SLURM gives none)."""

    id: str
    state: str
    reason: str | None = None
    name: str = ""


def _command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlurmError(f"`{name}` was not found on PATH: run this where the SLURM client commands are installed "
                         "(a login node)")
    return path


def test_submit(script: str, *args: str, timeout: float = 30.0) -> None:
    """``sbatch --test-only`` of ``script`` (the job script's text; ``args`` are extra sbatch
    options). Raises :class:`SlurmRequestError` with SLURM's own reason when no node could ever run it."""
    out = subprocess.run([_command("sbatch"), "--test-only", *args], input=script, text=True, capture_output=True,
                         timeout=timeout)
    if out.returncode != 0:
        lines = [line.strip() for line in (out.stderr + out.stdout).splitlines() if line.strip()]
        said = "; ".join(re.sub(r"^(sbatch: error: |error: )", "", line) for line in lines) or f"exit {out.returncode}"
        raise SlurmRequestError(f"SLURM refuses the job script ({said}): no job was submitted; change the request "
                                "(compute.slurm, or the #SBATCH lines) to fit a node of the partition "
                                "(`sinfo -o '%P %c %m %G'`)")


def hopeless(job: Job) -> str | None:
    """The remedy when ``job`` is pending for a reason that cannot clear, else ``None``."""
    if job.state != "PENDING" or not job.reason:
        return None
    for reason, remedy in HOPELESS.items():
        if job.reason.startswith(reason):
            return remedy
    return None


def lost_remedy(state: str) -> str:
    """What to do about a job that ended in ``state`` (``CANCELLED by 0`` reads as CANCELLED)."""
    word = state.split()[0] if state.strip() else state
    return LOST_REMEDY.get(word, "if it happens again, its log says why")


def _forgotten(out: subprocess.CompletedProcess) -> bool:
    """Whether a failed squeue/scontrol call says the job id is unknown (rather than failing)."""
    return "Invalid job id" in (out.stderr + out.stdout)


def job_state(job_id: str, timeout: float = 15.0) -> Job | None:
    """One job from ``scontrol show job`` (pending, running or recently ended), ``None`` when the
    controller no longer knows it. Raises :class:`SlurmError` when the controller does not answer."""
    out = subprocess.run([_command("scontrol"), "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        if _forgotten(out):
            return None
        raise SlurmError(f"scontrol show job {job_id} failed: {(out.stderr or out.stdout).strip()[:300]}")
    fields = dict(re.findall(r"(\w+)=(\S*)", out.stdout))
    reason = fields.get("Reason") or None
    return Job(str(job_id), fields.get("JobState", "UNKNOWN"), None if reason == "None" else reason,
               fields.get("JobName", ""))


def jobs(job_ids: list[str] | tuple[str, ...], timeout: float = 15.0) -> dict[str, Job]:
    """The jobs of ``job_ids`` the controller knows, by id (an id it forgot is left out). Raises
    :class:`SlurmError` when the controller does not answer (a busy controller is not the jobs'
    end: the callers look again later)."""
    if not job_ids:
        return {}
    out = subprocess.run([_command("squeue"), "-h", "-t", "all", "-j", ",".join(map(str, job_ids)),
                          "-o", "%i|%T|%r|%j"], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0 and not _forgotten(out):
        raise SlurmError(f"squeue failed: {(out.stderr or out.stdout).strip()[:300]}")
    found: dict[str, Job] = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            jid, state, reason, name = parts
            found[jid] = Job(jid, state, None if reason in ("None", "") else reason, name)
    for jid in map(str, job_ids):  # squeue drops ended jobs early; scontrol keeps them MinJobAge
        if jid not in found:
            job = job_state(jid, timeout)
            if job is not None:
                found[jid] = job
    return found


def cancel(job_ids: list[str] | tuple[str, ...], timeout: float = 30.0) -> None:
    """``scancel`` these jobs (and only these)."""
    if job_ids:
        out = subprocess.run([_command("scancel"), *map(str, job_ids)], capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0 and not _forgotten(out):
            raise SlurmError(f"scancel {' '.join(map(str, job_ids))} failed: {(out.stderr or out.stdout).strip()[:300]}"
                             "; cancel them by hand")
