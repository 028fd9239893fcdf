"""Why is a model slower in a Dask worker? Times one CPU workload in a plain process, in a
thread of it, in fresh (spawned) processes with and without a glibc malloc setting, and in
1-worker ``LocalCluster`` s that differ by one setting each.

Usage: ``.venv/bin/python benchmarks/dask_worker_probe.py [--repeats 4] [--passes 20]``.
The variants alternate within one run (every variant once per round, a fresh cluster or
process each time, every other round in reverse order), so a busy moment on a shared machine
hits them all alike. Printed per variant: the median wall seconds of the workload, the median
CPU seconds and minor page faults of the thread that ran it, the ratio of wall seconds to the
plain process of the same run, and what that process saw: PyTorch's intra-op and inter-op
threads, oneDNN, the CPU affinity, the Python thread count, the start method, Dask's profiler
setting and the thread and malloc environment variables.

The Dask variants start from the flows' cluster settings (:func:`tomodenoise.cluster.dask_runner_kwargs`
with one worker of one thread) and change one thing each (:data:`DASK_VARIANTS`).

Finding (2 shared cores): any ``MALLOC_TRIM_THRESHOLD_`` (Dask's nanny sets 65536; 2**30 as well)
turns off glibc's dynamic mmap threshold, so each activation over 128 KiB is mmapped and
page-faulted afresh: ~2.5x the page faults and ~1.7x the CPU time of the same passes.
The profiler, the event loop's timers and the preload change little.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")

#: ``name -> (dask config set while the cluster starts, extra cluster kwargs)``. The flows'
#: settings unset the nanny's ``MALLOC_TRIM_THRESHOLD_`` (:data:`tomodenoise.cluster.NANNY_UNSET_ENV`);
#: the others put back Dask's default (65536) and change one more thing each.
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
DASK_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "dask: flows' settings": ({}, {}),
    "dask: Dask's trim 65536": ({TRIM: 65536}, {}),
    "dask: trim 65536, profiler off": ({TRIM: 65536, "distributed.worker.profile.enabled": False}, {}),
    "dask: trim 65536, quiet loop": ({TRIM: 65536, "distributed.admin.tick.interval": "1s",
                                      "distributed.admin.system-monitor.interval": "5s",
                                      "distributed.worker.memory.monitor-interval": "5s"}, {}),
    "dask: trim 65536, no preload": ({TRIM: 65536}, {"preload": []}),
}
#: ``name -> environment`` of a fresh Python process (``spawn``, no Dask) running :func:`work`.
SPAWN_VARIANTS: dict[str, dict[str, str]] = {
    "spawned process": {},
    "spawned, trim 65536": {"MALLOC_TRIM_THRESHOLD_": "65536"},
    "spawned, trim 2**30": {"MALLOC_TRIM_THRESHOLD_": str(2**30)},
}


def work(passes: int = 20) -> dict[str, Any]:
    """``passes`` forward passes of a 10-layer 3x3 conv net on [4, 1, 128, 128], one thread;
    the wall and thread-CPU seconds and what this process's PyTorch and Dask settings are."""
    import multiprocessing
    import resource

    import dask
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(8 if i else 1, 8, 3, padding=1) for i in range(10)])
    x = torch.randn(4, 1, 128, 128)
    with torch.no_grad():
        net(x)
        t, c, ru = time.perf_counter(), time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD)
        for _ in range(passes):
            net(x)
        wall, cpu = time.perf_counter() - t, time.thread_time() - c
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - ru.ru_minflt
    return {"wall": wall, "cpu": cpu, "faults": faults, "torch_threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled, "affinity": sorted(os.sched_getaffinity(0)),
            "py_threads": threading.active_count(), "start": multiprocessing.get_start_method(allow_none=True),
            "profile": dask.config.get("distributed.worker.profile.enabled", None),
            "env": {k: os.environ.get(k) for k in ENV_KEYS if os.environ.get(k) is not None}}


def _dask_runs(config: dict[str, Any], extra: dict[str, Any], n: int, passes: int) -> list[dict[str, Any]]:
    import dask
    from distributed import Client, LocalCluster

    from tomodenoise.cluster import dask_runner_kwargs
    from tomodenoise.config import ComputeConfig

    kwargs = dict(dask_runner_kwargs(ComputeConfig(n_workers=1, threads_per_worker=1))["cluster_kwargs"])
    kwargs.update(dashboard_address=":0", **extra)
    with dask.config.set(config), LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        return [client.submit(work, passes, pure=False).result() for _ in range(n)]


def _spawned_runs(env: dict[str, str], n: int, passes: int) -> list[dict[str, Any]]:
    import multiprocessing

    saved = dict(os.environ)
    os.environ.update(env)  # a spawned child's environment is the parent's at start
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return [pool.apply(work, (passes,)) for _ in range(n)]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _runs(name: str, n: int, passes: int) -> list[dict[str, Any]]:
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # a nanny leaves it in this process's environment
    if name in SPAWN_VARIANTS:
        return _spawned_runs(SPAWN_VARIANTS[name], n, passes)
    if name == "plain process":
        return [work(passes) for _ in range(n)]
    if name == "thread of a process":
        with ThreadPoolExecutor(1) as ex:
            return [ex.submit(work, passes).result() for _ in range(n)]
    return _dask_runs(*DASK_VARIANTS[name], n, passes)


def probe(repeats: int, passes: int, per_round: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Every variant ``per_round`` times per round, ``repeats`` rounds, order as listed."""
    names = ["plain process", "thread of a process", *SPAWN_VARIANTS, *DASK_VARIANTS]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:  # ABBA: no variant always runs first
            runs[name] += _runs(name, per_round, passes)
    return runs


def report(runs: dict[str, list[dict[str, Any]]]) -> str:
    plain = statistics.median(r["wall"] for r in runs["plain process"])
    lines = [f"{'variant':32s} {'wall s':>7s} {'cpu s':>7s} {'faults':>7s} {'ratio':>6s}  seen in the process"]
    for name, rs in runs.items():
        wall, cpu = statistics.median(r["wall"] for r in rs), statistics.median(r["cpu"] for r in rs)
        faults = statistics.median(r["faults"] for r in rs)
        last = rs[-1]
        seen = (f"torch {last['torch_threads']}/{last['interop']} threads, mkldnn {last['mkldnn']}, "
                f"cpus {last['affinity']}, {last['py_threads']} py threads, start {last['start']}, "
                f"profile {last['profile']}, {last['env']}")
        lines.append(f"{name:32s} {wall:7.3f} {cpu:7.3f} {faults:7.0f} {wall / plain:6.2f}  {seen}")
        lines.append(f"{'':32s} walls {[round(r['wall'], 3) for r in rs]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4, help="rounds of every variant (default 4)")
    ap.add_argument("--passes", type=int, default=20, help="forward passes per timing (default 20)")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    print(f"machine: {platform.node()} {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    runs = probe(args.repeats, args.passes)
    print(report(runs))
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
