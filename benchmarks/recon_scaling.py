#!/usr/bin/env python
"""Reconstruction scaling: raw ASTRA in one process vs. the Prefect/Dask reconstruct flow.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks recon_scaling [--size 256 --angles 2048 --slices 64
        --z-chunk 4 --k 4 --repeats 2 --out bench-output/recon_scaling]

One simulated foam scan (Data Exchange ``.h5``, reused from ``--out`` when it is there) is
ingested once into a scan store under ``--out``. Then, ``--repeats`` times, in turn:

- **baseline**: for every chunk of ``pipeline.recon_chunks`` (split x time x channel x
  z-slab), read the slab's sinogram from the store and call ``tomodenoise.recon.fbp`` on
  the split's angles with the pipeline's filter, centre and ``n_pixels``, in this one
  process. Run by ``python -m benchmarks``, this process has ``OMP_NUM_THREADS=1`` (and the
  OpenBLAS/MKL equivalents) set *before* NumPy and ASTRA are imported, as a Dask worker of the
  pipeline (``threads_per_worker=1``) has. Nothing is written; the arrays are kept for the check.
- *pipeline_seq* (information only, no target): ``pipeline.reconstruct`` in this process,
  i.e. the flow tasks' own function (read, FBP, write the chunk and its marker) one chunk
  after the other, without Prefect or Dask: it separates the store's cost from the
  orchestration's.
- *raw_pool1 / raw_pool2* (information only): the same FBPs, read beforehand, in a warm
  process pool of 1 and 2 processes: the machine's own 2 / 1 ceiling with no orchestration.
- **flow, 1 worker** / **flow, 2 workers**: the reconstruct stage as ``pipeline_flow`` runs it
  (a subflow of a small parent flow, its chunks tasks on the run's Dask cluster,
  :class:`flows.pipeline.PrefectExecutor`; ``cluster='local'``, ``threads_per_worker=1``). The stage is made
  fresh first (``clear_stage('reconstruct')``, ``<store>/progress/`` removed, ``recon``
  filled with NaN so every value compared afterwards was written by that run). The timed
  region is the subflow call: Dask ``LocalCluster`` start-up and shutdown included.
  Start-up is reported separately: when the cluster was ready (from the log records of
  ``prefect_dask`` and the scheduler, both in this process), when the first chunk was
  written (its completion marker) and, as *start-up estimate*, the latter less one
  baseline chunk. Right after, the same subflow is called again on the now complete
  store: it returns without any chunk (Prefect's subflow overhead; ``prefect_dask``
  creates the cluster only at the first submit, so that run has no cluster).

The flows talk to a temporary local Prefect server (``prefect_test_harness``; its start-up
is timed separately and is not in any timed region), or with ``--api existing`` to the
configured ``PREFECT_API_URL``. A small untimed warm-up flow (tiny scan, 1 worker) runs
first so that one-time imports of this process are not charged to the first variant.

During every timed region a sampler charges CPU seconds to roles (this process, the Prefect
server, the workers, the rest of the machine, hypervisor steal): where the flow's extra time
goes. Every flow reconstruction is compared with the baseline's arrays (``np.allclose``,
``rtol=1e-5``): the benchmark checks that it measured the same work. Medians over the
repeats, the ratios ``flow1 / baseline`` (target <= 1.1) and ``throughput(2 workers) /
throughput(1 worker)`` (target >= 1.8) with PASS/FAIL are printed; all raw timings go to
``<out>/recon_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .recon_scaling_probes import CpuByRole, LogTimes, loadavg, machine_info, marker_stats, markers
from .recon_scaling_report import (
    FLOW1_TARGET,
    INFO_VARIANTS,
    SCALING_TARGET,
    STAGE_FACTOR,
    STARTUP_ALLOWANCE_S,
    VARIANTS,
    fmt,
    print_report,
    summarise,
)

__all__ = ["PRESETS", "add_arguments", "main", "make_config", "parse_args", "run_baseline", "run_recon_scaling",
           "scan_specs"]

REPO = Path(__file__).resolve().parents[1]

#: Scans measured by default: the user's scan (91 projections of 135 rows x 160 columns) and a large one.
PRESETS = {"small": {"size": 160, "angles": 91, "slices": 135},
           "large": {"size": 256, "angles": 720, "slices": 64}}


# --- setup ---------------------------------------------------------------------------------
def make_scan(out: Path, args: argparse.Namespace) -> tuple[Path, float | None]:
    """The simulated scan for these sizes: reused from ``out/scan/`` when present."""
    from tomodenoise.simulate.scan import simulate_foam_scan

    name = f"foam_{args.size}x{args.angles}x{args.slices}_n{args.n_spheres}_i{args.i0:g}_s{args.seed}.h5"
    path = out / "scan" / name
    if path.exists():
        return path, None
    t0 = time.perf_counter()
    tmp = path.with_name("tmp_" + name)
    simulate_foam_scan(tmp, size=args.size, n_angles=args.angles, n_slices=args.slices, i0=args.i0,
                       seed=args.seed, n_spheres=args.n_spheres)
    tmp.with_name(tmp.stem + "_clean.npy").unlink(missing_ok=True)  # not needed here
    os.replace(tmp, path)
    return path, time.perf_counter() - t0


def make_config(scan: Path, root: Path, args: argparse.Namespace):
    from tomodenoise.config import RunConfig

    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.input.scan_id = scan.stem  # one store per scan (size) under the same root
    cfg.output.root = str(root)
    cfg.splits.k = args.k
    cfg.recon.z_chunk = args.z_chunk
    cfg.compute.cluster = "local"
    cfg.compute.threads_per_worker = 1
    return cfg


def with_workers(cfg, n: int):
    c = cfg.model_copy(deep=True)
    c.compute.n_workers = n
    return c


def reset_reconstruction(store) -> None:
    """Make the next reconstruct run start from nothing (see ``tomodenoise.pipeline.reconstruction.start_reconstruct``)."""
    store.clear_stage("reconstruct")
    shutil.rmtree(store.root / "progress", ignore_errors=True)
    if (store.zarr_path / "recon").exists():
        arr = store.array("recon", mode="r+")
        arr[...] = np.float32(np.nan)


# --- variants ------------------------------------------------------------------------------
def run_baseline(store, cfg, chunks) -> tuple[float, np.ndarray]:
    """Raw ASTRA FBP of every chunk in this process; (seconds, recon (split,t,c,z,y,x))."""
    from tomodenoise.recon import fbp
    from tomodenoise.splits import split_indices

    geom = store.attrs["geometry"]
    ds = store.open()
    n = int(geom["n_pixels"])
    out = np.full((cfg.splits.k, ds.sizes["time"], ds.sizes["channel"], ds.sizes["z"], n, n), np.nan, np.float32)
    t0 = time.perf_counter()
    sinogram = store.array("sinogram")
    angles = store.angles
    splits = split_indices(len(angles), cfg.splits.k)
    for ch in chunks:
        sino = sinogram[ch.time, ch.channel, ch.z_start:ch.z_stop]
        idx = splits[ch.split]
        out[ch.region] = fbp(sino[:, idx], angles[idx], filter=cfg.recon.filter, center=geom["center"],
                             n_pixels=geom["n_pixels"], use_gpu=cfg.recon.use_gpu)
    return time.perf_counter() - t0, out


def run_sequential(store, cfg, baseline: np.ndarray) -> dict[str, Any]:
    """Info only: ``pipeline.reconstruct`` in this process (no Prefect, no Dask).

    The same per-chunk function as the flow's tasks (read, FBP, write the Zarr chunk, write
    the completion marker), one chunk after the other: the flow's overhead over it is
    Prefect's and Dask's, its overhead over the baseline is the store's.
    """
    from tomodenoise import pipeline

    reset_reconstruction(store)
    load = loadavg()
    t0 = time.perf_counter()
    pipeline.reconstruct(store, cfg, progress=False)
    secs = time.perf_counter() - t0
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)
    return {"seconds": secs, "loadavg": load, "allclose_baseline": bool(np.allclose(rec, baseline, rtol=1e-5))}


def _parent_flow():
    """A parent flow that times the reconstruct stage as ``pipeline_flow`` runs it: a subflow whose
    chunks are tasks on the run's Dask cluster (:class:`flows.pipeline.PrefectExecutor`), the
    cluster's start-up and shutdown included."""
    from prefect import flow

    from flows.pipeline import PrefectExecutor
    from tomodenoise.io.store import ScanStore
    from tomodenoise.pipeline import Context, stage_named

    @flow(name="recon-scaling-bench")
    def bench_parent(cfg, store_root: str) -> dict[str, float]:
        start_wall = time.time()
        t0 = time.perf_counter()
        with PrefectExecutor(cfg) as executor:
            executor.stage(stage_named("reconstruct"), ScanStore(store_root), cfg, Context())
        return {"seconds": time.perf_counter() - t0, "start_wall": start_wall}

    return bench_parent


def run_raw_pool(store, cfg, chunks, n_procs: int, baseline: np.ndarray) -> dict[str, Any]:
    """Info only: raw ASTRA FBP of every chunk in ``n_procs`` worker processes (no Prefect, no Dask).

    The hardware's own ceiling for the 2-worker target: the same FBPs, already read into
    memory, spread over a process pool started (and warmed: ASTRA imported) before the timed
    region. Its 2 / 1 ratio is what two workers could reach with zero orchestration.
    """
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from multiprocessing import get_context

    from tomodenoise.recon import fbp
    from tomodenoise.splits import split_indices

    geom = store.attrs["geometry"]
    sinogram = store.array("sinogram")
    angles = store.angles
    splits = split_indices(len(angles), cfg.splits.k)
    sinos = [np.ascontiguousarray(sinogram[c.time, c.channel, c.z_start:c.z_stop][:, splits[c.split]]) for c in chunks]
    angs = [angles[splits[c.split]] for c in chunks]
    call = partial(fbp, filter=cfg.recon.filter, center=geom["center"], n_pixels=geom["n_pixels"],
                   use_gpu=cfg.recon.use_gpu)
    with ProcessPoolExecutor(n_procs, mp_context=get_context("spawn")) as ex:
        list(ex.map(call, sinos[:n_procs], angs[:n_procs]))  # start and warm every process
        load = loadavg()
        with CpuByRole() as cpu:
            recs = list(ex.map(call, sinos, angs))
    ok = all(np.allclose(r, baseline[c.region], rtol=1e-5) for r, c in zip(recs, chunks))
    return {"seconds": cpu.wall, "loadavg": load, "cpu_seconds": cpu.stats(), "allclose_baseline": ok}


def run_flow(parent, store, cfg, n_workers: int, baseline: np.ndarray | None) -> dict[str, Any]:
    c = with_workers(cfg, n_workers)
    reset_reconstruction(store)
    load = loadavg()
    with LogTimes() as logs, CpuByRole() as cpu:
        r = parent(c, str(store.root))
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)
    rec_ms = markers(store)
    res: dict[str, Any] = {"seconds": r["seconds"], "loadavg": load, **logs.stats(r["start_wall"], n_workers),
                           **marker_stats(rec_ms, r["start_wall"], r["seconds"]), "cpu_seconds": cpu.stats()}
    res["chunks_written"] = len(rec_ms)
    if baseline is not None:
        res["allclose_baseline"] = bool(np.allclose(rec, baseline, rtol=1e-5))
        res["max_abs_diff"] = float(np.nanmax(np.abs(rec - baseline))) if np.isfinite(rec).all() else float("nan")
    # The same subflow on the now complete store: Prefect's subflow overhead with no chunk
    # (no Dask cluster either: it is created at the first submit, see LogTimes).
    r0 = parent(c, str(store.root))
    res["zero_chunk_seconds"] = r0["seconds"]
    return res


def warm_up(parent, out: Path) -> float:
    """An untimed tiny flow run: one-time imports and first API contact of this process."""
    from tomodenoise import pipeline
    from tomodenoise.config import RunConfig
    from tomodenoise.simulate.scan import simulate_foam_scan

    d = out / "warmup"
    scan = d / "warm.h5"
    if not scan.exists():
        simulate_foam_scan(scan, size=16, n_angles=8, n_slices=2, n_spheres=10)
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(d / "out")
    cfg.splits.k = 2
    cfg.recon.z_chunk = 2
    cfg.compute.n_workers = 1
    store = pipeline.ingest(cfg)
    reset_reconstruction(store)
    t0 = time.perf_counter()
    parent(cfg, str(store.root))
    return time.perf_counter() - t0


# --- main ----------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks recon_scaling``."""
    p.add_argument("--scans", default="small,large",
                   help=f"comma-separated presets {', '.join(f'{k}={v}' for k, v in PRESETS.items())}; "
                        "ignored when --size/--angles/--slices give one custom scan (default %(default)s)")
    p.add_argument("--size", type=int, default=None, help="custom scan: detector width = reconstruction grid")
    p.add_argument("--angles", type=int, default=None, help="custom scan: projection angles")
    p.add_argument("--slices", type=int, default=None, help="custom scan: detector rows (z slices)")
    p.add_argument("--z-chunk", type=int, default=4, help="slices per chunk (default %(default)s)")
    p.add_argument("--k", type=int, default=4, help="Noise2Inverse splits (default %(default)s)")
    p.add_argument("--repeats", type=int, default=2,
                   help="rounds of (baseline, 1 worker, 2 workers) (default %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "bench-output" / "recon_scaling", help="(default %(default)s)")
    p.add_argument("--n-spheres", type=int, default=2000, help="(default %(default)s)")
    p.add_argument("--i0", type=float, default=100.0, help="(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    p.add_argument("--api", choices=("harness", "existing"), default="harness",
                   help="harness: temporary local Prefect server; existing: the configured PREFECT_API_URL "
                        "(default %(default)s)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up flow run")


def scan_specs(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """The scans to measure: one custom scan when --size/--angles/--slices are given, else the presets of --scans."""
    custom = (args.size, args.angles, args.slices)
    if any(v is not None for v in custom):
        if any(v is None for v in custom):
            raise ValueError("a custom scan needs all of --size, --angles and --slices")
        return {"custom": {"size": args.size, "angles": args.angles, "slices": args.slices}}
    names = [n.strip() for n in args.scans.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise ValueError(f"unknown scan preset(s) {unknown}; choose from {sorted(PRESETS)}")
    return {n: PRESETS[n] for n in names}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed as ``python -m benchmarks recon_scaling`` does, with ``scan_specs`` set (for the tests)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks recon_scaling")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        args.scan_specs = scan_specs(args)
    except ValueError as e:
        p.error(str(e))
    args.argv = list(argv)
    return args


def scan_args(args: argparse.Namespace, spec: dict[str, int]) -> argparse.Namespace:
    """``args`` with one scan's sizes."""
    return argparse.Namespace(**{**vars(args), **spec})


def bench_scan(name: str, args: argparse.Namespace, out: Path, parent) -> dict[str, Any]:
    """All variants on one scan, ``args.repeats`` times; its runs, check and summary."""
    from tomodenoise import pipeline
    from tomodenoise.pipeline.reconstruction import recon_groups
    from tomodenoise.recon import gpu_available

    scan, sim_s = make_scan(out, args)
    cfg = make_config(scan, out / "store", args)
    t0 = time.perf_counter()
    store = pipeline.ingest(cfg)  # skipped when the store already holds this scan
    ingest_s = time.perf_counter() - t0
    chunks = pipeline.recon_chunks(store, cfg)
    geom = store.attrs["geometry"]
    sres: dict[str, Any] = {"name": name}
    sres["scan"] = {"path": str(scan), "simulate_seconds": sim_s, "store": str(store.root), "ingest_seconds": ingest_s}
    sres["work"] = {"n_chunks": len(chunks), "k": args.k, "z_chunk": args.z_chunk,
                    "n_slabs": len({(c.time, c.channel, c.z_start) for c in chunks}), "n_slices": args.slices,
                    "n_angles": args.angles, "angles_per_split": args.angles // args.k, "n_det": geom["n_det"],
                    "n_pixels": geom["n_pixels"], "center": geom["center"], "filter": cfg.recon.filter,
                    "algorithm": cfg.recon.algorithm, "gpu": gpu_available() and cfg.recon.use_gpu != "no",
                    "tasks": {n: len(recon_groups(store, with_workers(cfg, n), chunks)) for n in (1, 2)}}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in (*VARIANTS, *INFO_VARIANTS)}
    baseline = None
    baseline_repeat_equal = True
    for rep in range(args.repeats):
        tag = f"[{name}, repeat {rep + 1}]"
        load = loadavg()
        with CpuByRole() as cpu:
            secs, rec = run_baseline(store, cfg, chunks)
        if baseline is not None:
            baseline_repeat_equal &= bool(np.array_equal(rec, baseline))
        baseline = rec
        runs["baseline"].append({"seconds": secs, "loadavg": load, "cpu_seconds": cpu.stats()})
        print(f"{tag} baseline: {secs:.2f} s", flush=True)
        r = run_sequential(store, cfg, baseline)
        runs["pipeline_seq"].append(r)
        print(f"{tag} pipeline_seq (info): {r['seconds']:.2f} s, matches baseline: {r['allclose_baseline']}",
              flush=True)
        for v, n in (("raw_pool1", 1), ("raw_pool2", 2)):
            r = run_raw_pool(store, cfg, chunks, n, baseline)
            runs[v].append(r)
            print(f"{tag} {v} (info): {r['seconds']:.2f} s, matches baseline: {r['allclose_baseline']}", flush=True)
        for v, n in (("flow1", 1), ("flow2", 2)):
            r = run_flow(parent, store, cfg, n, baseline)
            runs[v].append(r)
            print(f"{tag} {v}: {r['seconds']:.2f} s (cluster ready at {fmt(r.get('cluster_ready_at_s'))} s, "
                  f"first chunk at {fmt(r.get('first_chunk_s'))} s, zero-chunk subflow {r['zero_chunk_seconds']:.2f} s, "
                  f"matches baseline: {r.get('allclose_baseline')})", flush=True)
    sres["runs"] = runs
    flows_ = [r for v in ("flow1", "flow2") for r in runs[v]]
    sres["check"] = {
        "all_match": all(r.get("allclose_baseline") for v in ("flow1", "flow2", *INFO_VARIANTS) for r in runs[v]),
        "max_abs_diff": max((r.get("max_abs_diff", float("nan")) for r in flows_), default=None),
        "baseline_repeats_identical": baseline_repeat_equal,
        "chunks_written_each_run": sorted({r["chunks_written"] for r in flows_}),
    }
    sres["summary"] = summarise(runs, len(chunks))
    return sres


def run_recon_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Every scan of ``args.scan_specs``, all variants; writes ``<out>/recon_scaling.json``, prints the report."""
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    exe = sys.executable
    if exe.startswith(str(REPO) + os.sep):
        exe = os.path.relpath(exe, REPO)
    command = shlex.join([exe, "-m", "benchmarks", "recon_scaling", *getattr(args, "argv", [])])
    res: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "argv"},
        "machine": machine_info(),
        "loadavg_before": loadavg(),
        "targets": {"stage_max": f"{STAGE_FACTOR} x raw + {STARTUP_ALLOWANCE_S:g} s",
                    "stage_factor": STAGE_FACTOR, "startup_allowance_s": STARTUP_ALLOWANCE_S,
                    "flow1_over_baseline_max": FLOW1_TARGET, "scaling_2_over_1_min": SCALING_TARGET},
        "scans": {},
    }
    from contextlib import ExitStack

    with ExitStack() as stack:
        t0 = time.perf_counter()
        if args.api == "harness":
            from prefect.testing.utilities import prefect_test_harness

            stack.enter_context(prefect_test_harness(server_startup_timeout=120))
            api = "prefect_test_harness (temporary local Prefect server, SQLite)"
        else:
            from prefect.settings import PREFECT_API_URL

            api = f"existing PREFECT_API_URL={PREFECT_API_URL.value()}"
        res["api"] = {"kind": api, "startup_seconds": time.perf_counter() - t0}
        parent = _parent_flow()
        res["warmup_seconds"] = None if args.no_warmup else warm_up(parent, out)
        for name, spec in args.scan_specs.items():
            res["scans"][name] = bench_scan(name, scan_args(args, spec), out, parent)

    res["loadavg_after"] = loadavg()
    scans = res["scans"].values()
    res["check"] = {"all_match": all(sr["check"]["all_match"] for sr in scans)}
    res["stage_target_pass"] = all(t["pass"] for sr in scans for t in sr["summary"]["stage_target"].values())
    res["json"] = str(out / "recon_scaling.json")
    (out / "recon_scaling.json").write_text(json.dumps(res, indent=2))
    for sr in scans:
        print_report(res, sr)
    print()
    print(f"stage target (<= {STAGE_FACTOR} x raw + {STARTUP_ALLOWANCE_S:g} s) on every scan, 1 and 2 workers: "
          f"{'PASS' if res['stage_target_pass'] else 'FAIL'}")
    return res


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks recon_scaling``: exit status 1 when a flow's arrays differ from the baseline's."""
    try:
        args.scan_specs = scan_specs(args)
    except ValueError as e:
        print(f"python -m benchmarks recon_scaling: error: {e}", file=sys.stderr)
        return 2
    return 0 if run_recon_scaling(args)["check"]["all_match"] else 1
