"""Summary and printed report of benchmarks/recon_scaling.py: medians, targets, tables."""

from __future__ import annotations

import statistics
from typing import Any

FLOW1_TARGET = 1.1  # flow with 1 worker / baseline, at most (without the start-up allowance)
SCALING_TARGET = 1.8  # throughput(2 workers) / throughput(1 worker), at least (information)
STAGE_FACTOR = 1.1  # the stage target: flow seconds <= STAGE_FACTOR x raw seconds + STARTUP_ALLOWANCE_S
STARTUP_ALLOWANCE_S = 5.0
VARIANTS = ("baseline", "flow1", "flow2")
INFO_VARIANTS = ("pipeline_seq", "raw_pool1", "raw_pool2")


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(runs: dict[str, list[dict[str, Any]]], n_chunks: int) -> dict[str, Any]:
    flows = ("flow1", "flow2")
    med = {v: median_of(runs[v], "seconds") for v in VARIANTS}
    ready = {v: median_of(runs[v], "cluster_ready_at_s") for v in flows}
    flow1_ratio = med["flow1"] / med["baseline"]
    scaling = med["flow1"] / med["flow2"]  # throughput = n_chunks / seconds
    # Start-up estimate: time to the first written chunk (subflow and cluster start, worker
    # imports, first task) less the compute of one chunk (the baseline's mean).
    first = {v: median_of(runs[v], "first_chunk_s") for v in flows}
    startup = {v: first[v] - med["baseline"] / n_chunks if first[v] is not None else None for v in flows}
    net = {v: med[v] - startup[v] if startup[v] is not None else None for v in flows}
    raw = {v: median_of(runs.get(v, []), "seconds") for v in ("raw_pool1", "raw_pool2")}
    roles = sorted({k for rs in runs.values() for r in rs for k in r.get("cpu_seconds", {})})
    cpu = {v: {k: statistics.median(r["cpu_seconds"][k] for r in rs) for k in roles}
           for v, rs in runs.items() if rs and all("cpu_seconds" in r for r in rs)}
    return {
        "median_seconds": med,
        "median_pipeline_seq_seconds": median_of(runs["pipeline_seq"], "seconds"),
        "median_raw_pool_seconds": raw,
        # Info: what 2 processes reach over 1 on the same FBPs without any orchestration.
        "raw_pool_scaling_2_over_1": raw["raw_pool1"] / raw["raw_pool2"] if raw["raw_pool1"] and raw["raw_pool2"] else None,
        "median_cpu_seconds": cpu,
        "median_cluster_ready_at_s": ready,
        "median_cluster_start_s": {v: median_of(runs[v], "cluster_start_s") for v in flows},
        "median_first_chunk_s": first,
        "startup_estimate_s": startup,
        "median_after_last_chunk_s": {v: median_of(runs[v], "after_last_chunk_s") for v in flows},
        "median_zero_chunk_seconds": {v: median_of(runs[v], "zero_chunk_seconds") for v in flows},
        "per_chunk_seconds": {v: med[v] / n_chunks for v in VARIANTS},
        "median_chunk_interval_per_worker_s": {"baseline": med["baseline"] / n_chunks,
                                               **{v: median_of(runs[v], "median_chunk_interval_s") for v in flows}},
        "throughput_chunks_per_s": {v: n_chunks / med[v] for v in VARIANTS},
        "flow1_over_baseline": flow1_ratio,
        "flow1_over_baseline_pass": flow1_ratio <= FLOW1_TARGET,
        "scaling_2_over_1": scaling,
        "scaling_2_over_1_pass": scaling >= SCALING_TARGET,
        # The stage target: the flow (cluster start-up and shutdown included) against the raw
        # FBPs in one process, with a fixed start-up allowance; 1 and 2 workers each.
        "stage_target": {v: {"stage_s": med[v], "raw_s": med["baseline"],
                             "limit_s": STAGE_FACTOR * med["baseline"] + STARTUP_ALLOWANCE_S,
                             "stage_over_raw": med[v] / med["baseline"],
                             "stage_over_raw_after_startup": net[v] / med["baseline"] if net[v] else None,
                             "startup_estimate_s": startup[v],
                             "pass": med[v] <= STAGE_FACTOR * med["baseline"] + STARTUP_ALLOWANCE_S}
                         for v in flows},
        # Informative only (not the targets): without the start-up estimate.
        "flow1_over_baseline_after_startup": net["flow1"] / med["baseline"] if net["flow1"] else None,
        "scaling_2_over_1_after_startup": net["flow1"] / net["flow2"] if net["flow1"] and net["flow2"] else None,
    }


def fmt(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def print_report(res: dict[str, Any], sres: dict[str, Any]) -> None:
    s, m = sres["summary"], res["machine"]
    print()
    print(f"== Reconstruction scaling: {sres['name']} scan ==")
    print(f"command : {res['command']}")
    print(f"machine : {m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}, OMP_NUM_THREADS={m['omp_num_threads']}")
    print(f"load    : before {res['loadavg_before']}, after {res['loadavg_after']}")
    print(f"API     : {res['api']['kind']} (server start-up {res['api']['startup_seconds']:.1f} s, not timed)")
    w = sres["work"]
    print(f"work    : {w['n_chunks']} chunks = {w['k']} splits x {w['n_slabs']} z-slabs of {w['z_chunk']} slices; "
          f"{w['n_angles']} angles ({w['angles_per_split']} per split), {w['n_det']} columns -> {w['n_pixels']}^2")
    print(f"repeats : {res['args']['repeats']} (variants alternated; medians below)")
    print()
    print("| variant | median s | raw s | cluster ready at s | first chunk at s | start-up est. s "
          "| after last chunk s | zero-chunk subflow s | s / chunk | steady s / chunk / worker | chunks / s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, label in (("baseline", "baseline (raw ASTRA, 1 process)"), ("flow1", "flow, 1 worker"),
                     ("flow2", "flow, 2 workers")):
        raw = ", ".join(f"{r['seconds']:.2f}" for r in sres["runs"][v])
        g = (lambda key: fmt(s[key].get(v))) if v != "baseline" else (lambda key: "-")
        print(f"| {label} | {s['median_seconds'][v]:.2f} | {raw} | {g('median_cluster_ready_at_s')} | "
              f"{g('median_first_chunk_s')} | {g('startup_estimate_s')} | {g('median_after_last_chunk_s')} | {g('median_zero_chunk_seconds')} | "
              f"{s['per_chunk_seconds'][v]:.3f} | {fmt(s['median_chunk_interval_per_worker_s'][v], '.3f')} | "
              f"{s['throughput_chunks_per_s'][v]:.3f} |")
    print()
    ok = {True: "PASS", False: "FAIL"}
    for v, label in (("flow1", "1 worker "), ("flow2", "2 workers")):
        t = s["stage_target"][v]
        print(f"stage, {label}: {t['stage_s']:.2f} s vs raw {t['raw_s']:.2f} s = {t['stage_over_raw']:.2f} x "
              f"(start-up est. {fmt(t['startup_estimate_s'])} s; after it {fmt(t['stage_over_raw_after_startup'])} x); "
              f"target <= {STAGE_FACTOR} x raw + {STARTUP_ALLOWANCE_S:g} s = {t['limit_s']:.2f} s {ok[t['pass']]}")
    print(f"flow1 / baseline            = {s['flow1_over_baseline']:.3f}  (target <= {FLOW1_TARGET}) "
          f"{ok[s['flow1_over_baseline_pass']]}")
    print(f"throughput 2 / 1 workers    = {s['scaling_2_over_1']:.3f}  (target >= {SCALING_TARGET}) "
          f"{ok[s['scaling_2_over_1_pass']]}")
    if s["median_pipeline_seq_seconds"] is not None:
        print(f"  info: pipeline.reconstruct in this process (read, FBP, write chunk + marker; no Prefect/Dask): "
              f"median {s['median_pipeline_seq_seconds']:.2f} s = "
              f"{s['median_pipeline_seq_seconds'] / s['median_seconds']['baseline']:.3f} x baseline")
    print(f"  without the start-up estimate (info only): flow1 / baseline = "
          f"{fmt(s['flow1_over_baseline_after_startup'], '.3f')}, 2 / 1 = {fmt(s['scaling_2_over_1_after_startup'], '.3f')}")
    if s.get("raw_pool_scaling_2_over_1") is not None:
        r = s["median_raw_pool_seconds"]
        print(f"  info: raw ASTRA in a warm process pool (no orchestration): 1 process {r['raw_pool1']:.2f} s, "
              f"2 processes {r['raw_pool2']:.2f} s -> 2 / 1 = {s['raw_pool_scaling_2_over_1']:.3f} (this machine's ceiling)")
    cpu = s.get("median_cpu_seconds") or {}
    if cpu:
        roles = ("this process", "prefect server", "workers", "other children", "rest of the machine", "steal")
        print()
        print("CPU seconds during the timed region (medians; 'this process' = the flow engine, Dask scheduler")
        print("and nannies for the flows, the FBPs themselves for the baseline):")
        print("| variant | wall s | " + " | ".join(roles) + " |")
        print("|---|---:|" + "---:|" * len(roles))
        for v, c in cpu.items():
            print(f"| {v} | {c['wall']:.2f} | " + " | ".join(f"{c.get(k, 0.0):.2f}" for k in roles) + " |")
    print(f"flow results == baseline (allclose, rtol 1e-5): {sres['check']['all_match']}")
    print(f"raw timings: {res['json']}")
