"""The denoise stage in one Dask worker against the same shards in one process, as a ratio.

``python -m benchmarks.dask_inference_ratio [--repeats 2] [--size 128] [--slices 24]
[--out bench-output/dask_inference_ratio]`` (from the repository root). Each measurement is :func:`benchmarks.inference.bench_sharded`
with one worker: a fresh foam store (default MS-D, ``--size`` squared, K = 4, chunks of 2 of ``--slices`` slices),
``pipeline.denoise`` in this process, then the same shards as ``pipeline.denoise_shard``
tasks on a 1-worker ``LocalCluster`` made from the flows' cluster settings; its ratio is
worker seconds / one-process seconds of that same measurement, and the worker's output must
equal the single process's bit for bit.

Two variants alternate (A B B A ...):

- ``flows' settings``: the workers as the flows start them (glibc's malloc defaults, see
  :data:`tomodenoise.cluster.NANNY_UNSET_ENV`);
- ``Dask's trim 65536``: the worker started with ``MALLOC_TRIM_THRESHOLD_=65536``, which is
  what a Dask nanny sets by default (the settings before the fix).

Target: the flows' settings within 1.2x of one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

__all__ = ["TARGET", "VARIANTS", "add_arguments", "main", "measure"]

TARGET = 1.2
#: variant -> MALLOC_TRIM_THRESHOLD_ a worker starts with (None: not set)
VARIANTS: dict[str, str | None] = {"flows' settings": None, "Dask's trim 65536": "65536"}


def measure(out: Path, trim: str | None, size: int = 128, n_slices: int = 24) -> dict[str, Any]:
    """One store, one process against one worker; the worker inherits ``trim`` from this process."""
    from benchmarks.inference import bench_sharded

    before = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    if trim is not None:  # read by glibc when the worker starts; this process's malloc is set already
        os.environ["MALLOC_TRIM_THRESHOLD_"] = trim
    try:
        res = bench_sharded(out, size=size, n_slices=n_slices, workers=(1,))
    finally:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        if before is not None:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = before
    run = res["runs"][0]
    return {"one_process_s": res["single_process_s"], "worker_s": run["seconds"],
            "ratio": round(run["seconds"] / res["single_process_s"], 3),
            "equal": run["equals_single_process"], "chunks": res["chunks"], "load": round(os.getloadavg()[0], 2)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=2, help="measurements per variant (default 2)")
    p.add_argument("--size", type=int, default=128, help="slice size of the store (default 128)")
    p.add_argument("--slices", type=int, default=24, help="slices of the store, 2 per chunk (default 24)")
    p.add_argument("--out", default="bench-output/dask_inference_ratio", help="working folder and results.json")


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    names = list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    t0 = time.perf_counter()
    print(f"load before {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            m = measure(out / f"{len(sum(runs.values(), []))}", VARIANTS[name], args.size, args.slices)
            runs[name].append(m)
            print(f"{name:20s} {m}", flush=True)
    summary = {n: statistics.median(m["ratio"] for m in rs) for n, rs in runs.items()}
    ok = all(m["equal"] for rs in runs.values() for m in rs)
    for n, ratio in summary.items():
        print(f"{n:20s} median ratio worker / one process: {ratio:.2f}")
    verdict = summary["flows' settings"] <= TARGET
    print(f"target <= {TARGET}x: {'PASS' if verdict else 'FAIL'}; outputs bitwise equal: {ok}; "
          f"{time.perf_counter() - t0:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"runs": runs, "median_ratio": summary, "target": TARGET}, indent=2))
    return 0 if verdict and ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    raise SystemExit(main(ap.parse_args()))
