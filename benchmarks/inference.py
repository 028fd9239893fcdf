"""Inference speed: sharded denoising on 1 vs 2 Dask workers, and slices/s of one process.

Two measurements in one run (``python -m benchmarks inference``; < 3 min on 2 CPU cores):

(a) **Sharded inference**: one simulated foam store (recon + a checkpoint of the default
    MS-D network, trained for one short epoch: speed does not depend on the weights) is
    denoised by :func:`tomodenoise.pipeline.denoise_shard` tasks on a Dask ``LocalCluster``
    of 1 and then 2 worker processes (the cluster the flows use, ``compute.cluster = local``),
    each from no markers. Reported: the seconds from the first submit to the last shard
    (cluster start-up and the workers' imports apart, given on their own; the
    network's one load per worker is in), the ratio 1 / 2 workers, and whether the
    2-worker result equals the single-process stage bitwise.
(b) **Slices per second** of :func:`tomodenoise.denoise.denoise` with K = 4 leave-one-out
    inputs averaged at 512 x 512 with the default MS-D (100 layers, width 1) in this process,
    against the reference code's 3.56 slices/s. That figure was measured on a GPU; the target
    (>= 10x) is for an H100/H200, so on a CPU only the CPU figure is reported and the GPU
    figure stays open.

No Prefect here (it measures the shards, not the orchestration): the Dask cluster is started directly with the
flows' cluster settings (:func:`tomodenoise.cluster.dask_runner_kwargs`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import machine, machine_line

__all__ = ["REFERENCE_SLICES_PER_S", "add_arguments", "bench_sharded", "bench_slices_per_second", "format_report",
           "main", "run_inference_benchmark"]

#: The reference Noise2Inverse code's inference speed (slices/s, K = 4, 512 x 512, MS-D 100x1, a GPU).
REFERENCE_SLICES_PER_S = 3.56
GPU_TARGET_FACTOR = 10.0


def _make_store(out: Path, size: int, n_slices: int, z_chunk: int, msd: dict[str, Any]):
    """A foam store with recon and a briefly trained checkpoint; returns ``(store, cfg)``."""
    from tomodenoise import pipeline
    from tomodenoise.config import ModelConfig, RunConfig
    from tomodenoise.simulate.scan import simulate_foam_scan

    scan = simulate_foam_scan(out / "foam.h5", size=size, n_angles=max(32, size), n_slices=n_slices, i0=200.0,
                              seed=0, n_spheres=max(20, size // 2))["scan"]
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out / "out")
    cfg.recon.z_chunk = z_chunk
    cfg.model = ModelConfig(name="msd", params=dict(msd))
    cfg.train.epochs, cfg.train.patch_size, cfg.train.patches_per_slice = 1, 16, 1
    cfg.train.progress, cfg.train.device, cfg.inference.device = False, "cpu", "cpu"
    cfg.output.previews = 0
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    pipeline.train(store, cfg)
    return store, cfg


def _forget_denoise(store) -> None:
    for p in (store.root / "progress").glob("denoise-*"):
        shutil.rmtree(p)
    store.clear_stage("denoise", "report")


def _import_core() -> None:
    import torch  # noqa: F401

    from tomodenoise import denoise, pipeline  # noqa: F401


def _sharded_run(store, cfg, n_workers: int) -> dict[str, Any]:
    """Start a LocalCluster of ``n_workers``, run every shard on it, close it."""
    from distributed import Client, LocalCluster

    from tomodenoise import pipeline
    from tomodenoise.cluster import dask_runner_kwargs

    run_cfg = cfg.model_copy(deep=True)
    run_cfg.compute.cluster, run_cfg.compute.n_workers = "local", n_workers
    kwargs = dict(dask_runner_kwargs(run_cfg.compute)["cluster_kwargs"])
    kwargs.update(dashboard_address=":0")
    _forget_denoise(store)
    t0 = time.perf_counter()
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        client.run(_import_core)  # a worker's one-off imports (torch, the core), apart from the work
        imports = time.perf_counter() - t1
        shards = pipeline.start_stage(pipeline.stage_named("denoise"), store, run_cfg).units
        t1 = time.perf_counter()
        futures = [client.submit(pipeline.denoise_shard, store, run_cfg, s, pure=False) for s in shards]
        client.gather(futures)
        seconds = time.perf_counter() - t1
    pipeline.finish_denoise(store, run_cfg, seconds)
    info = store.stage_info("denoise")
    return {"workers": n_workers, "shards": len(shards), "chunks": info["chunks"], "processes": info["processes"],
            "seconds": round(seconds, 3), "cluster_start_s": round(started, 3), "worker_imports_s": round(imports, 3),
            "denoised": np.asarray(store.array("denoised")[:])}


def bench_sharded(out: Path, *, size: int = 128, n_slices: int = 24, z_chunk: int = 2,
                  msd: dict[str, Any] | None = None, workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """(a): the same store denoised by shards on each number of workers, and in this process."""
    from tomodenoise import pipeline

    msd = dict(msd or {})
    t0 = time.perf_counter()
    store, cfg = _make_store(out, size, n_slices, z_chunk, msd)
    setup = time.perf_counter() - t0
    _forget_denoise(store)
    t0 = time.perf_counter()
    pipeline.denoise(store, cfg, progress=False)
    single_s = time.perf_counter() - t0
    single = np.asarray(store.array("denoised")[:])
    runs = [_sharded_run(store, cfg, n) for n in workers]
    for r in runs:
        r["equals_single_process"] = bool(np.array_equal(r.pop("denoised"), single))
    by_n = {r["workers"]: r for r in runs}
    ratio = by_n[1]["seconds"] / by_n[2]["seconds"] if 1 in by_n and 2 in by_n and by_n[2]["seconds"] > 0 else None
    return {"size": size, "slices": n_slices, "z_chunk": z_chunk, "chunks": len(pipeline.denoise_chunks(store)),
            "msd": msd or "default (100 x 1)", "setup_s": round(setup, 1), "single_process_s": round(single_s, 3),
            "runs": runs, "speedup_2_vs_1": None if ratio is None else round(ratio, 2)}


def bench_slices_per_second(*, size: int = 512, n_slices: int = 2, k: int = 4, batch_size: int = 4,
                            msd: dict[str, Any] | None = None, device: str = "auto",
                            precision: str = "auto") -> dict[str, Any]:
    """(b): slices/s of K-averaged inference in this process (one slice of warm-up first)."""
    import torch

    from tomodenoise.denoise import denoise, resolve_precision
    from tomodenoise.models import build_model
    from tomodenoise.train import resolve_device

    dev = resolve_device(device)
    torch.manual_seed(0)
    model = build_model("msd", **dict(msd or {})).eval()
    splits = np.random.default_rng(0).normal(1.0, 0.3, size=(k, n_slices, size, size)).astype(np.float32)
    kw = dict(strategy="X:1", normalisation={"mean": 1.0, "std": 0.3}, batch_size=batch_size, device=dev,
              precision=precision)
    denoise(model, splits[:, :1], **kw)  # warm-up: allocator, kernels, threads
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    denoise(model, splits, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rate = n_slices / seconds
    return {"size": size, "slices": n_slices, "k": k, "batch_size": batch_size, "msd": dict(msd or {}) or
            "default (100 x 1)", "device": str(dev), "precision": resolve_precision(precision, dev),
            "threads": torch.get_num_threads(), "seconds": round(seconds, 3), "slices_per_s": round(rate, 4),
            "reference_slices_per_s": REFERENCE_SLICES_PER_S, "vs_reference": round(rate / REFERENCE_SLICES_PER_S, 4),
            "gpu_target": f">= {GPU_TARGET_FACTOR:g}x the reference on an H100/H200"
                          + ("" if dev.type == "cuda" else ": open (measured on a CPU here)")}


def run_inference_benchmark(out: str | Path, *, store_size: int = 128, store_slices: int = 24, z_chunk: int = 2,
                            store_msd: dict[str, Any] | None = None, speed_size: int = 512, speed_slices: int = 2,
                            speed_msd: dict[str, Any] | None = None, device: str = "auto") -> dict[str, Any]:
    """Both measurements; writes ``inference.json`` under ``out`` and returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    res = {"machine": machine(), "loadavg_before": load and [round(x, 2) for x in load],
           "sharded": bench_sharded(out / "sharded", size=store_size, n_slices=store_slices, z_chunk=z_chunk,
                                    msd=store_msd),
           "speed": bench_slices_per_second(size=speed_size, n_slices=speed_slices, msd=speed_msd, device=device)}
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()] if load else None
    (out / "inference.json").write_text(json.dumps(res, indent=2))
    return res


def format_report(res: dict[str, Any]) -> str:
    """The figures of :func:`run_inference_benchmark` as printed lines."""
    a, b = res["sharded"], res["speed"]
    lines = [f"machine: {machine_line(res['machine'])}; load average (1, 5, 15 min) before "
             f"{res.get('loadavg_before')}, after {res.get('loadavg_after')}",
             f"(a) sharded inference, {a['chunks']} chunks of {a['z_chunk']} slices at {a['size']}x{a['size']}, "
             f"MS-D {a['msd']}; one process: {a['single_process_s']:.2f} s"]
    for r in a["runs"]:
        lines.append(f"    {r['workers']} worker(s): {r['seconds']:.2f} s for {r['shards']} shards on "
                     f"{r['processes']} process(es) (apart: cluster start {r['cluster_start_s']:.1f} s, worker imports "
                     f"{r['worker_imports_s']:.1f} s); "
                     f"bitwise equal to one process: {r['equals_single_process']}")
    if a["speedup_2_vs_1"] is not None:
        lines.append(f"    1 / 2 workers: {a['speedup_2_vs_1']:.2f}x")
    lines.append(f"(b) {b['slices_per_s']:.3f} slices/s (K = {b['k']}, {b['size']}x{b['size']}, MS-D {b['msd']}, "
                 f"{b['device']} {b['precision']}, {b['threads']} threads; {b['slices']} slices in "
                 f"{b['seconds']:.1f} s) = {b['vs_reference']:.3f}x the reference's "
                 f"{b['reference_slices_per_s']} slices/s (GPU); target {b['gpu_target']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks inference``."""
    p.add_argument("--out", default="bench-inference", help="working folder (default %(default)s)")
    p.add_argument("--store-size", type=int, default=128, help="(a) slice size of the store (default %(default)s)")
    p.add_argument("--store-slices", type=int, default=24, help="(a) slices of the store (default %(default)s)")
    p.add_argument("--z-chunk", type=int, default=2, help="(a) slices per chunk (default %(default)s)")
    p.add_argument("--speed-size", type=int, default=512, help="(b) slice size (default %(default)s)")
    p.add_argument("--speed-slices", type=int, default=2,
                   help="(b) slices timed, after one of warm-up (default %(default)s)")
    p.add_argument("--depth", type=int, default=None, help="MS-D depth for both (default: the network's 100)")
    p.add_argument("--device", default="auto", help="(b) device: auto, cpu, cuda (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks inference``."""
    msd = {"depth": args.depth} if args.depth else None
    res = run_inference_benchmark(args.out, store_size=args.store_size, store_slices=args.store_slices,
                                  z_chunk=args.z_chunk, store_msd=msd, speed_size=args.speed_size,
                                  speed_slices=args.speed_slices, speed_msd=msd, device=args.device)
    print(format_report(res))
    print(f"wrote {Path(args.out) / 'inference.json'}")
    return 0
