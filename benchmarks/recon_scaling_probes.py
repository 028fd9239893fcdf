"""What benchmarks/recon_scaling.py measures besides wall time: the machine, chunk markers,
the Dask cluster's start-up from the log, and CPU seconds by role during a timed region."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

# --- machine -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": model,
        "mem_gib": mem_gib,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def markers(store) -> list[dict[str, Any]]:
    """Chunk completion markers: wall time (mtime) and the worker's pid."""
    out = []
    for p in (store.root / "progress").glob("reconstruct-*/*.done"):
        try:
            pid = json.loads(p.read_text()).get("pid")
        except (OSError, ValueError):
            pid = None
        out.append({"t": p.stat().st_mtime_ns / 1e9, "pid": pid})
    return sorted(out, key=lambda m: m["t"])


def marker_stats(ms: list[dict[str, Any]], start_wall: float, seconds: float) -> dict[str, Any]:
    """Time to the first and last written chunk, and the steady per-chunk time of each worker."""
    if not ms:
        return {}
    per_worker: dict[Any, list[float]] = {}
    for m in ms:
        per_worker.setdefault(m["pid"], []).append(m["t"])
    gaps = [b - a for ts in per_worker.values() for a, b in zip(ts, ts[1:])]
    return {
        "first_chunk_s": ms[0]["t"] - start_wall,
        "last_chunk_s": ms[-1]["t"] - start_wall,
        "after_last_chunk_s": start_wall + seconds - ms[-1]["t"],
        "chunks_per_worker": sorted(len(ts) for ts in per_worker.values()),
        "median_chunk_interval_s": statistics.median(gaps) if gaps else None,
    }


class LogTimes(logging.Handler):
    """Wall times of the log records that mark the Dask cluster's start-up in this process.

    ``prefect_dask`` creates the cluster lazily, at the first ``submit`` (the chunk tasks;
    the planning task runs in the flow's process), and logs "Creating a new Dask cluster";
    the scheduler (in this process too) logs "Register worker" once per worker.
    """

    LOGGERS = ("prefect.task_runner.dask", "distributed.scheduler")

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.creating: list[float] = []
        self.registered: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Creating a new Dask cluster"):
            self.creating.append(record.created)
        elif msg.startswith("Register worker"):
            self.registered.append(record.created)

    def __enter__(self) -> "LogTimes":
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def stats(self, start_wall: float, n_workers: int) -> dict[str, Any]:
        if not self.creating or len(self.registered) < n_workers:
            return {}
        ready = sorted(self.registered)[n_workers - 1]
        return {"cluster_create_at_s": self.creating[0] - start_wall,
                "cluster_start_s": ready - self.creating[0],
                "cluster_ready_at_s": ready - start_wall}


class CpuByRole:
    """CPU seconds spent during a timed region, by role, on the whole machine.

    Roles: this process (the flow engine, the Dask scheduler and nannies, or the baseline's
    own work), the Prefect server (the harness's subprocess), the workers (the Dask workers,
    or the raw pool's processes, which this one spawned), and everything else on the machine
    (``psutil.cpu_times`` less the above: other jobs). A sampling thread keeps each child's last CPU times, so children
    that end inside the region (workers at cluster close) are counted up to their last
    sample (0.2 s). On 2 cores every CPU second that is not a worker's is taken from the
    workers when both compute.
    """

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.role: dict[int, str] = {}

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.system

    def _classify(self, p) -> str:
        try:
            cmd = " ".join(p.cmdline())
        except (self.psutil.Error, OSError):
            return "other children"
        if "uvicorn" in cmd or ("prefect" in cmd and "server" in cmd):
            return "prefect server"
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            return "workers"
        return "other children"

    def _sample(self) -> None:
        for p in self.me.children(recursive=True):
            try:
                t = self._busy(p.cpu_times())
            except (self.psutil.Error, OSError):
                continue
            if p.pid not in self.first:
                self.first[p.pid] = t
                self.role[p.pid] = self._classify(p)
            self.last[p.pid] = t

    def __enter__(self) -> "CpuByRole":
        import threading

        self._sample()
        self.t0 = time.perf_counter()
        self.me0 = self._busy(self.me.cpu_times())
        t = self.psutil.cpu_times()
        self.all0, self.steal0 = self._busy(t), getattr(t, "steal", 0.0)
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(0.2):
                self._sample()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self.t0
        self.me1 = self._busy(self.me.cpu_times())
        t = self.psutil.cpu_times()
        self.all1, self.steal1 = self._busy(t), getattr(t, "steal", 0.0)

    def stats(self) -> dict[str, float]:
        out = {"this process": self.me1 - self.me0, "prefect server": 0.0, "workers": 0.0,
               "other children": 0.0}
        for pid, t in self.last.items():
            out[self.role[pid]] += t - self.first[pid]
        out["rest of the machine"] = max(0.0, (self.all1 - self.all0) - sum(out.values()))
        out["steal"] = self.steal1 - self.steal0  # CPU time the hypervisor gave to other machines
        out["wall"] = self.wall
        return {k: round(v, 3) for k, v in out.items()}
