"""Keep the run's Dask cluster while the network trains, or close it and start it again?

``python -m benchmarks idle_cluster [--repeats 3] [--epochs 6] [--out bench-output/idle_cluster]``
(from the repository root). The same CPU training (a small MS-D on a foam's split FBPs, a
fixed number of epochs, one process) is timed with the run's local Dask cluster
(``compute`` defaults: 2 worker processes) idle beside it, and with no cluster, alternating
(A B B A ...); and the seconds to start and close that cluster (what closing it before training
and starting it again for the denoising costs). Keeping it is better when the training's
slowdown is less than one start and close.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "main", "train_seconds"]


def _data(out: Path, size: int = 96, slices: int = 8):
    """Split FBPs ``(split, z, y, x)`` of a small simulated foam (the core's own stages)."""
    from tomodenoise import pipeline
    from tomodenoise.config import RunConfig
    from tomodenoise.simulate.scan import simulate_foam_scan

    scan = simulate_foam_scan(out / "foam.h5", size=size, n_angles=256, n_slices=slices, i0=100.0, seed=3,
                              n_spheres=200)
    cfg = RunConfig()
    cfg.input.path, cfg.output.root = str(scan["scan"]), str(out / "store")
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    return pipeline.load_splits(store)


def train_seconds(splits, epochs: int, out: Path) -> float:
    """Seconds of ``epochs`` epochs (one 64-px patch per slice and split, batch 4) of a small MS-D."""
    from tomodenoise.config import ModelConfig, TrainConfig
    from tomodenoise.train import train_n2i

    cfg = TrainConfig(epochs=epochs, batch_size=4, patch_size=64, patches_per_slice=1, progress=False, seed=0,
                      max_minutes=None)
    t0 = time.perf_counter()
    train_n2i(splits, cfg, ModelConfig(name="msd", params={"depth": 20, "width": 1}), out)
    return time.perf_counter() - t0


def main(args: argparse.Namespace) -> int:
    from tomodenoise.cluster import DaskCluster
    from tomodenoise.config import ComputeConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = _data(out)
    train_seconds(splits, 1, out / "warm-up")  # imports and first allocations, untimed
    compute = ComputeConfig()
    rows: dict[str, list[float]] = {"no cluster": [], "idle cluster": []}
    starts: list[float] = []
    order = [v for i in range(args.repeats) for v in (("no cluster", "idle cluster") if i % 2 == 0
                                                      else ("idle cluster", "no cluster"))]
    for i, variant in enumerate(order):
        cluster = DaskCluster(compute)
        if variant == "idle cluster":
            t0 = time.perf_counter()
            cluster.address()
            starts.append(time.perf_counter() - t0)
        rows[variant].append(train_seconds(splits, args.epochs, out / f"run{i}"))
        t0 = time.perf_counter()
        cluster.close()
        if variant == "idle cluster":
            starts[-1] += time.perf_counter() - t0
        print(f"{variant}: {rows[variant][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    result: dict[str, Any] = {"epochs": args.epochs, "seconds": rows, "median_s": med,
                              "slowdown_s": round(med["idle cluster"] - med["no cluster"], 2),
                              "ratio": round(med["idle cluster"] / med["no cluster"], 3),
                              "start_and_close_s": round(statistics.median(starts), 2),
                              "workers": compute.n_workers}
    (out / "idle_cluster.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timings per variant (default 3)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs timed (default 6)")
    p.add_argument("--out", default="bench-output/idle_cluster", help="output folder")


if __name__ == "__main__":  # pragma: no cover - python -m benchmarks idle_cluster is the way
    raise SystemExit("run it as: python -m benchmarks idle_cluster")
