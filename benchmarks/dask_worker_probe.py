"""Why is a model slower in a Dask worker? Times one CPU workload in a plain process, in a
thread of it, and in a 1-worker ``LocalCluster`` with and without the nanny's glibc trim setting.

Usage: ``.venv/bin/python benchmarks/dask_worker_probe.py`` (prints seconds per variant; run it
on a quiet machine, the variants alternate within one run).
"""
from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor


def work() -> tuple[float, str | None]:
    """10 forward passes of a 10-layer 3x3 conv net on [4, 1, 128, 128], one thread."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(8 if i else 1, 8, 3, padding=1) for i in range(10)])
    x = torch.randn(4, 1, 128, 128)
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(10):
            net(x)
    return time.perf_counter() - t, os.environ.get("MALLOC_TRIM_THRESHOLD_")


def main() -> None:
    from distributed import Client, LocalCluster

    os.environ["OMP_NUM_THREADS"] = "1"
    print(f"machine: {platform.node()} {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    print("plain process       ", [round(work()[0], 3) for _ in range(2)])
    with ThreadPoolExecutor(1) as ex:
        print("thread of a process ", [round(ex.submit(work).result()[0], 3) for _ in range(2)])
    for trim in (None, str(2**30)):
        env = {"OMP_NUM_THREADS": "1"} | ({"MALLOC_TRIM_THRESHOLD_": trim} if trim else {})
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                          env=env) as cluster, Client(cluster) as client:
            runs = [client.submit(work, pure=False).result() for _ in range(2)]
        print(f"dask worker (MALLOC_TRIM_THRESHOLD_={runs[0][1]})", [round(r[0], 3) for r in runs])


if __name__ == "__main__":
    main()
