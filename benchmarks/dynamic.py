"""The dynamic 4D benchmark on a simulated scan with known truth.

``python -m benchmarks dynamic --out DIR [--minutes M]`` runs :func:`run_dynamic_benchmark`: a
continuous-rotation scan of a moving 2D+t phantom (interlaced steps, a non-integer number of
projections per step, as ``tomodenoise simulate dynamic`` writes it); PSNR per time step of
FBP, N2I, and N2I with the neighbouring time steps as extra input channels (the
time-neighbour variant), and a strip of a few time steps. Both networks are trained by the
real pipeline (:mod:`benchmarks.modalities`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .common import log, machine, machine_line
from .modalities import fbp_and_denoised, run_config, run_pipeline, write_result

__all__ = ["add_arguments", "main", "run_dynamic_benchmark"]


def run_dynamic_benchmark(out: Path, *, minutes: float = 5.0, size: int = 128, n_slices: int = 4, n_steps: int = 8,
                          projections_per_step: float = 100.5, i0: float = 300.0, seed: int = 0) -> dict[str, Any]:
    """FBP, N2I and N2I with time neighbours on a simulated dynamic scan; PSNR per time step."""
    from tomodenoise.report import write_grid
    from tomodenoise.simulate.dynamic import simulate_dynamic_scan

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate_dynamic_scan(out / "dynamic.h5", size=size, n_slices=n_slices, n_steps=n_steps,
                                projections_per_step=projections_per_step, i0=i0, seed=seed)
    truth = np.load(sim["reference"])
    runs: dict[str, dict[str, Any]] = {}
    images: dict[str, np.ndarray] = {}
    variants = {"N2I": {}, "N2I + time neighbours": {"neighbours": 1, "neighbour_axis": "time"}}
    for name, extra in variants.items():
        log(f"dynamic: {name}, {minutes:g} min of training")
        cfg = run_config(sim["scan"], out / "runs", "n2i" if not extra else "n2i_time", minutes,
                      time={"window": "angle", "span_deg": 180.0}, train=extra)
        metrics, store, seconds = run_pipeline(cfg, truth)
        fbp, den = fbp_and_denoised(store)
        images.setdefault("FBP", fbp)
        images[name] = den
        runs[name] = {"metrics": metrics, "seconds": round(seconds, 1),
                      "train_seconds": store.stage_info("train").get("seconds")}
    times = [e["time"] for e in runs["N2I"]["metrics"]["per_time"]]
    per_step = [{"time": times[t], "fbp": runs["N2I"]["metrics"]["per_time"][t]["fbp_psnr"],
                 **{n: runs[n]["metrics"]["per_time"][t]["denoised_psnr"] for n in variants}} for t in range(len(times))]
    ts = sorted(set(np.linspace(0, len(times) - 1, 4).round().astype(int).tolist()))
    zm = truth.shape[2] // 2
    rows = {"truth": truth[ts, 0, zm], **{n: images[n][ts, 0, zm] for n in ("FBP", *variants)}}
    strip = write_grid(out / "dynamic_strip.png", rows, [f"t = {times[t]:.3f} s" for t in ts],
                       title=f"dynamic phantom, slice {zm}: truth, FBP, N2I, N2I + time neighbours")
    m = machine()
    result = {"machine": m, "minutes": minutes, "scan": {"size": size, "slices": n_slices, "steps": n_steps,
              "projections_per_step": projections_per_step, "i0": i0}, "per_step": per_step,
              "overall": {n: runs[n]["metrics"]["denoised"]["psnr"] for n in variants} |
                         {"FBP": runs["N2I"]["metrics"]["fbp"]["psnr"]},
              "runs": {n: {k: v for k, v in r.items() if k != "metrics"} for n, r in runs.items()},
              "strip": str(strip)}
    cmd = f"python -m benchmarks dynamic --out {out} --minutes {minutes:g}"
    md = [f"Dynamic 4D ({machine_line(m)}; {n_steps} steps x {projections_per_step:g} projections, "
          f"{size}x{size}x{n_slices}, I0 {i0:g}; {minutes:g} min training each)", "",
          "| time step (s) | FBP | N2I | N2I + time neighbours |", "|---|---|---|---|"]
    md += [f"| {e['time']:.3f} | {e['fbp']:.2f} | {e['N2I']:.2f} | {e['N2I + time neighbours']:.2f} |" for e in per_step]
    o = result["overall"]
    md += [f"| all | {o['FBP']:.2f} | {o['N2I']:.2f} | {o['N2I + time neighbours']:.2f} |", "",
           f"strip: {strip}", f"reproduce: `{cmd}`"]
    write_result(out, "dynamic", result, md)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks dynamic``."""
    p.add_argument("--out", required=True, help="output folder (the scan, the runs, dynamic.json, dynamic.md)")
    p.add_argument("--minutes", type=float, default=5.0, help="training minutes of each network (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks dynamic``."""
    run_dynamic_benchmark(Path(args.out), minutes=args.minutes)
    return 0
