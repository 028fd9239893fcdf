"""``tomodenoise slurm train|pipeline|watch``: submit the job scripts sized to the partition.

The request is sized from what ``sinfo`` says about the partition's nodes (CPUs, memory,
GPUs; the smallest node, so that any of them fits) and from the run configuration
(``train.ranks``, ``train.device``): one task per node, all of its CPUs unless asked for fewer,
a share of its memory in proportion, one GPU per DDP rank (the whole pipeline: every GPU of the
node, one Dask worker each; none for ``train.device: cpu``).
The sizes go to ``sbatch`` as options, which override the script's ``#SBATCH`` lines. Before
anything is submitted ``sbatch --test-only`` must accept the request
(:func:`tomodenoise.hpc.jobs.test_submit`); after, the job is watched until it runs: one pending
for a reason that cannot clear (:data:`tomodenoise.hpc.jobs.HOPELESS`, e.g. ``PartitionConfig``)
is cancelled and reported in one sentence within :data:`HOPELESS_GRACE_S` s of SLURM saying
so. ``--wait`` follows the job to its end and reports its exit state and log.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ..config import RunConfig, apply_sets
from .jobs import ALIVE, SlurmError, hopeless, jobs, test_submit
from . import SCRIPTS

__all__ = ["HOPELESS_GRACE_S", "Node", "Request", "job_details", "partition_nodes", "size_request", "submit",
           "submit_pipeline", "submit_train", "watch"]

#: Seconds a job stays pending for a reason that cannot clear before it is given up (SLURM may
#: say such a reason once while it re-plans; every reason of HOPELESS stays when it is real).
HOPELESS_GRACE_S = 6.0
#: Node states that run no job.
UNUSABLE = ("down", "drain", "drng", "fail", "maint", "inval", "unk", "futr", "boot")


@dataclass(frozen=True)
class Node:
    """One node as ``sinfo`` sees it."""

    name: str
    cpus: int
    memory_mb: int
    gpus: int
    state: str = "idle"


@dataclass(frozen=True)
class Request:
    """What to ask SLURM for: ``nodes`` nodes of ``partition``, one task each with
    ``cpus_per_task`` CPUs, ``mem`` and ``gpus_per_node`` GPUs; ``ranks_per_node`` DDP ranks
    and ``workers_per_node`` Dask workers on each."""

    partition: str
    nodes: int
    cpus_per_task: int
    mem: str
    gpus_per_node: int
    ranks_per_node: int
    workers_per_node: int
    time: str | None = None

    def sbatch_args(self) -> list[str]:
        args = [f"--partition={self.partition}", f"--nodes={self.nodes}", "--ntasks-per-node=1",
                f"--cpus-per-task={self.cpus_per_task}", f"--mem={self.mem}", f"--gpus-per-node={self.gpus_per_node}"]
        return args + ([f"--time={self.time}"] if self.time else [])

    def env(self) -> dict[str, str]:
        """What the job scripts read besides SLURM's own variables."""
        return {"TOMODENOISE_RANKS_PER_NODE": str(self.ranks_per_node),
                "TOMODENOISE_WORKERS_PER_NODE": str(self.workers_per_node)}

    def describe(self) -> str:
        gpus = f", {self.gpus_per_node} GPU{'s' if self.gpus_per_node != 1 else ''}" if self.gpus_per_node else ""
        return (f"{self.nodes} node{'s' if self.nodes != 1 else ''} of {self.partition} ({self.cpus_per_task} CPUs, "
                f"{self.mem}{gpus} each; {self.ranks_per_node} DDP rank{'s' if self.ranks_per_node != 1 else ''} "
                f"and {self.workers_per_node} Dask worker{'s' if self.workers_per_node != 1 else ''} per node)")


def _run(cmd: list[str], timeout: float = 30.0, **kw: Any) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise SlurmError(f"`{cmd[0]}` was not found on PATH: run this where the SLURM client commands are installed "
                         "(a login node)") from None


def gpus_of(gres: str) -> int:
    """GPUs in a ``sinfo`` GRES field (``gpu:4``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    n = 0
    for part in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = part.strip().split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            n += int(fields[-1])
    return n


def partition_nodes(partition: str | None = None) -> tuple[str, list[Node]]:
    """The partition (default: SLURM's default one) and its nodes that can run jobs."""
    out = _run(["sinfo", "-h", "-N", "-o", "%N|%c|%m|%G|%P|%t"])
    if out.returncode != 0:
        raise SlurmError(f"sinfo failed ({out.stderr.strip() or out.returncode}): is the SLURM controller reachable "
                         "from here?")
    rows = [line.split("|") for line in out.stdout.splitlines() if line.count("|") == 5]
    names = sorted({r[4].rstrip("*") for r in rows})
    if partition is None:
        defaults = [r[4].rstrip("*") for r in rows if r[4].endswith("*")]
        partition = defaults[0] if defaults else (names[0] if names else None)
    if partition not in names:
        raise SlurmError(f"no partition {partition!r} here (sinfo has {', '.join(names) or 'none'}): choose one "
                         "with --partition")
    nodes = [Node(r[0], int(r[1]), int(r[2].rstrip("+") or 0), gpus_of(r[3]), r[5])
             for r in rows if r[4].rstrip("*") == partition]
    usable = [n for n in nodes if not any(n.state.rstrip("*~#!%$@^-").startswith(s) for s in UNUSABLE)]
    if not usable:
        raise SlurmError(f"every node of partition {partition} is unavailable "
                         f"({', '.join(f'{n.name} {n.state}' for n in nodes)}): ask the site, or choose another "
                         "partition")
    return partition, usable


def size_request(cfg: RunConfig, partition: str, nodes: list[Node], *, n_nodes: int = 1, cpus: int | None = None,
                 mem: str | None = None, walltime: str | None = None, whole_gpus: bool = False) -> Request:
    """The request for ``n_nodes`` of ``nodes`` (see the module docstring); ``whole_gpus``: every
    GPU of the node (the whole pipeline: one Dask worker per GPU, then the ranks), else one per
    rank. Refuses (one sentence) what no sizing can fit: more nodes than the partition has,
    ranks beyond its GPUs."""
    if n_nodes > len(nodes):
        raise SlurmError(f"--nodes {n_nodes} but partition {partition} has {len(nodes)} usable node"
                         f"{'s' if len(nodes) != 1 else ''}: ask for fewer nodes")
    cpu, mem_mb, gpus = (min(n.cpus for n in nodes), min(n.memory_mb for n in nodes), min(n.gpus for n in nodes))
    device = cfg.train.device
    if device == "cuda" and gpus == 0:
        raise SlurmError(f"train.device = cuda but the nodes of partition {partition} have no GPUs (sinfo): choose "
                         "a GPU partition with --partition, or set train.device=cpu")
    on_gpus = device != "cpu" and gpus > 0
    ranks = cfg.train.ranks
    per_node = (gpus if on_gpus else 1) if ranks == "auto" else math.ceil(int(ranks) / n_nodes)
    if on_gpus and per_node > gpus:
        raise SlurmError(f"train.ranks = {ranks} needs {per_node} GPUs per node on {n_nodes} node"
                         f"{'s' if n_nodes != 1 else ''}, but the nodes of partition {partition} have {gpus}: ask for "
                         f"more nodes (--nodes) or set train.ranks to at most {gpus * n_nodes}")
    cpus = cpus or cpu
    asked = (gpus if whole_gpus else per_node) if on_gpus else 0
    workers = asked or max(1, min(cfg.compute.n_workers, cpus))
    mem = mem or f"{max(256, mem_mb * min(cpus, cpu) // max(cpu, 1))}M"
    return Request(partition, n_nodes, cpus, mem, asked, per_node, workers, walltime)


def job_details(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (empty when the controller no longer knows the job)."""
    out = _run(["scontrol", "-o", "show", "job", str(job_id)], timeout=15)
    return dict(re.findall(r"(\w+)=(\S*)", out.stdout)) if out.returncode == 0 else {}


def submit(script: Path, args: Callable[[], list[Any]], request: Request | None, *, log: Path | None = None,
           dry_run: bool = False, say: Callable[[str], None] = print) -> str | None:
    """``sbatch`` ``script`` with ``request``'s options (none: its ``#SBATCH`` lines as they are)
    after ``sbatch --test-only`` accepted them; ``args()`` gives the script's arguments once it
    has (it may write files). Returns the job id (None for ``dry_run``)."""
    opts = request.sbatch_args() if request else []
    if log is not None:
        opts.append(f"--output={log}")
    env = dict(os.environ, **(request.env() if request else {}))
    # the environment this command runs from (a venv), else the PATH as it is
    env.setdefault("TOMODENOISE_ENV", sys.prefix if (Path(sys.prefix) / "bin" / "activate").exists() else "")
    test_submit(script.read_text(), *opts)  # SlurmError: nothing submitted
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["sbatch", "--parsable", *opts, str(script), *map(str, args())]
    if dry_run:
        say(f"sbatch --test-only accepts it; would run: {shlex.join(cmd)}")
        return None
    out = _run(cmd, env=env)
    if out.returncode != 0:
        raise SlurmError(f"sbatch refused {script.name} ({out.stderr.strip() or out.returncode}): nothing was "
                         "submitted; change the request")
    job_id = out.stdout.strip().split(";")[0]
    say(f"submitted job {job_id}: {script.name} on {request.describe() if request else 'its #SBATCH lines'}")
    return job_id


def watch(job_id: str, *, start_within: float = 120.0, wait: bool = False, cancel: bool = True,
          poll: float = 2.0, say: Callable[[str], None] = print) -> dict[str, str]:
    """Follow ``job_id`` until it runs (``wait``: until it ends); returns its ``scontrol`` record.

    Raises :class:`SlurmError` (one sentence: reason and remedy) when it stays pending for a
    reason of :data:`~tomodenoise.hpc.jobs.HOPELESS` for :data:`HOPELESS_GRACE_S` s (``cancel``:
    it is cancelled first), or when it ends other than COMPLETED. A job still pending for a
    reason that may clear after ``start_within`` s is left queued (without ``wait``)."""
    t0, since, running = time.monotonic(), None, False
    while True:
        job = jobs([job_id]).get(job_id)
        if job is None:
            raise SlurmError(f"job {job_id} is not known to SLURM (ended over MinJobAge ago, or cancelled before it "
                             "was read): look for its log")
        now = time.monotonic()
        remedy = hopeless(job)
        since = (since or now) if remedy else None
        if remedy and now - since >= HOPELESS_GRACE_S:
            if cancel:
                _run(["scancel", job_id], timeout=15)
            raise SlurmError(f"job {job_id} can never start: it is pending with Reason={job.reason} "
                             f"({remedy}){'; it was cancelled' if cancel else f'; cancel it with scancel {job_id}'}")
        if job.state in ("RUNNING", "COMPLETING", "CONFIGURING") and not running:
            running = True
            d = job_details(job_id)
            say(f"job {job_id} running on {d.get('NodeList', '?')}; its log: {d.get('StdOut', '?')}")
            if not wait:
                return d
        elif job.state.split()[0] not in ALIVE:
            return _ended(job_id, job.state, job.reason, t0, say)
        elif job.state == "PENDING" and not wait and not remedy and now - t0 > start_within:
            say(f"job {job_id} is still pending ({job.reason or 'no reason given'}) after {now - t0:.0f} s; it "
                f"stays queued: follow it with `squeue -j {job_id}` or `tomodenoise slurm watch {job_id} --wait`")
            return job_details(job_id)
        time.sleep(poll)


def _ended(job_id: str, state: str, reason: str | None, t0: float, say: Callable[[str], None]) -> dict[str, str]:
    d = job_details(job_id)
    logfile = d.get("StdOut", "?")
    if state == "COMPLETED":
        say(f"job {job_id} COMPLETED after {time.monotonic() - t0:.0f} s; its log: {logfile}")
        return d
    last = ""
    try:
        lines = [x for x in Path(logfile).read_text(errors="replace").splitlines() if x.strip()]
        last = f"; its last line: {lines[-1].strip()[:300]}" if lines else ""
    except OSError:
        pass
    raise SlurmError(f"job {job_id} ended {state} (exit code {d.get('ExitCode', '?')}"
                     f"{', ' + reason if reason else ''}): see its log {logfile}{last}")


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def submit_train(store_root: Path, cfg: RunConfig | None, *, partition: str | None = None, n_nodes: int = 1,
                 cpus: int | None = None, mem: str | None = None, walltime: str | None = None, as_is: bool = False,
                 dry_run: bool = False, sets: list[str] | tuple[str, ...] = (),
                 say: Callable[[str], None] = print) -> tuple[str | None, Path]:
    """Submit ``train.sbatch`` for the store at ``store_root`` (its reconstruction complete).
    ``cfg``: the run configuration (None: the one the store was made with); ``sets``: ``--set``
    items applied on top of it. Writes the job's
    configuration and log under ``<store>/report/slurm/``; returns (job id, that folder)."""
    from ..io.store import ScanStore

    store = ScanStore(Path(store_root).expanduser().resolve())
    if not store.exists():
        raise FileNotFoundError(f"{store.root}: no scan store here (a <out>/<scan_id>/ folder with scan.zarr)")
    if not store.stage_done("reconstruct"):
        raise ValueError(f"{store.root}: the reconstruction is not complete, so there is nothing to train on: run "
                         "`tomodenoise run` (or `tomodenoise slurm pipeline`) on the scan first")
    made_with = RunConfig.model_validate(store.attrs["config"])
    cfg = apply_sets(cfg if cfg is not None else made_with, list(sets))
    cfg.input.path = cfg.input.path or made_with.input.path
    cfg.output.root = str(store.root.parent)
    request = None if as_is else size_request(cfg, *partition_nodes(partition), n_nodes=n_nodes, cpus=cpus, mem=mem,
                                              walltime=walltime)
    folder = store.root / "report" / "slurm"
    job = submit(SCRIPTS / "train.sbatch", lambda: [store.root, cfg.save(folder / f"train-{_stamp()}.yaml")],
                 request, log=folder / "train-%j.log", dry_run=dry_run, say=say)
    return job, folder


def submit_pipeline(cfg: RunConfig, *, partition: str | None = None, n_nodes: int = 1, cpus: int | None = None,
                    mem: str | None = None, walltime: str | None = None, as_is: bool = False, dry_run: bool = False,
                    say: Callable[[str], None] = print) -> tuple[str | None, Path]:
    """Submit ``pipeline.sbatch`` for the scan of ``cfg`` (``input.path``, ``output.root``).
    Writes the job's configuration and log under ``<store>/report/slurm/``; returns (job id, that folder)."""
    from ..io import detect_format
    from ..pipeline import store_for

    detect_format(cfg.input.path)  # a missing or unknown scan is refused before anything is submitted
    request = None if as_is else size_request(cfg, *partition_nodes(partition), n_nodes=n_nodes, cpus=cpus, mem=mem,
                                              walltime=walltime, whole_gpus=True)
    folder = store_for(cfg).root / "report" / "slurm"
    job = submit(SCRIPTS / "pipeline.sbatch",
                 lambda: [cfg.input.path, cfg.output.root, cfg.save(folder / f"pipeline-{_stamp()}.yaml")], request,
                 log=folder / "pipeline-%j.log", dry_run=dry_run, say=say)
    return job, folder
