"""The foam benchmark: the original Noise2Inverse experiment, reproduced on N slices.

``python -m benchmarks foam --slices N --out DIR`` runs :func:`run_foam_benchmark`:

1. Simulate and reconstruct (or load from the cache in ``DIR``) ``N`` central slices of the
   reference foam (:func:`benchmarks.common.prepare_foam`): parallel beam, 1024 angles,
   768 columns, 2x2 supersampling, Poisson noise with ``I0 = 10`` photons, absorption 2.76;
   the clean full-angle FBP is the ground truth, K = 4 interlaced split FBPs the N2I input.
2. Score every method against the clean FBP with ``data_range = max - min`` of the clean
   FBP over the evaluated slices: ``fbp``, ``split``, ``gaussian`` and ``tv`` (both tuned
   by an *oracle* grid search on the ground truth, as in the reference;
   :mod:`benchmarks.foam_baselines`), ``n2i`` (``tomodenoise run``'s own defaults) and the
   fixed-recipe variants ``n2i_msd`` and ``n2i_unet`` (Noise2Inverse X:1, trained for
   ``minutes`` each on the noisy splits only; the checkpoint is selected by the N2I
   validation loss on held-out slices), optionally ``bm3d``.
3. Write ``DIR/metrics.json`` (every method + a ``meta`` entry), ``DIR/preview.png``,
   ``DIR/time_to_quality.png`` (PSNR against training seconds, one curve per network) and
   ``DIR/results.md`` (:mod:`benchmarks.foam_report`), and print the table.

Every size is a parameter (:class:`benchmarks.common.FoamGeometry`), so the tests run the
same machinery on a 32 x 32 toy in seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .common import PUBLISHED, TARGET_MARGIN_DB, FoamData, FoamGeometry, log, machine, machine_line, prepare_foam
from .foam_baselines import BASELINES, FoamScores
from .foam_report import (ALL_METHODS, DEFAULT_METHODS, N2I_METHODS, QUICK_TARGET, margin_summary, render_report,
                          time_to_quality, write_preview)
from .n2i import NetworkSetup, default_network_setups, train_network
from .plots import write_curves

__all__ = ["add_arguments", "foam_command", "main", "run_foam_benchmark", "select_methods"]


def select_methods(methods: Sequence[str] | None) -> list[str]:
    """``methods`` (default :data:`DEFAULT_METHODS`) in table order; unknown names are a ValueError."""
    methods = list(DEFAULT_METHODS if methods is None or len(methods) == 0 else methods)
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
    return [m for m in ALL_METHODS if m in methods]


def foam_command(out: Path, n_slices: int, minutes: float, phantom: str | None, methods: Sequence[str]) -> str:
    """The command line that reproduces a run (recorded in ``metrics.json`` and ``results.md``)."""
    return (f"python -m benchmarks foam --slices {n_slices} --out {out} --minutes {minutes:g}"
            + (f" --phantom {phantom}" if phantom else "")
            + (f" --methods {' '.join(methods)}" if list(methods) != list(DEFAULT_METHODS) else ""))


def _train_networks(data: FoamData, methods: Sequence[str], setups: dict[str, NetworkSetup], minutes: float,
                    out: Path, scores: FoamScores, **train: Any) -> None:
    """Train every N2I network of ``methods`` for ``minutes``, score it and save its denoised volume."""
    for name in N2I_METHODS:
        if name not in methods:
            continue
        t0 = time.perf_counter()
        img, info = train_network(name, setups[name], data, minutes, out, **train)
        scores.training[name] = info
        scores.add(name, data.scorer.score(img, time.perf_counter() - t0), img[data.centre])
        np.save(out / f"{name}_denoised.npy", img)


def _meta(data: FoamData, scores: FoamScores, summary: dict[str, Any], mach: dict[str, Any],
          command: str) -> dict[str, Any]:
    """The ``meta`` entry of ``metrics.json``: how the figures were made."""
    geom = data.geometry
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": mach,
        "command": command,
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "n_slices": len(data.rows),
        "slice_indices": data.rows.tolist(),
        "centre_slice": int(data.centre_row),
        "phantom": data.phantom,
        "geometry": {**asdict(geom), "pixel_size": geom.pixel_size,
                     "angles": f"linspace(0, pi, {geom.n_angles}, endpoint=False)"},
        "noise": {"model": "Poisson", "i0": data.i0, "absorption": data.absorption, "seed": data.seed,
                  "zero_count_fraction": data.simulation.get("zero_count_fraction")},
        "splits": {"k": data.k, "strategy": "X:1", "recon": "FBP ram-lak"},
        "data_range": data.scorer.data_range,
        "ground_truth": "FBP of the clean projections, all angles",
        "simulation": data.simulation,
        "reconstruction_seconds": data.recon_seconds,
        "training": scores.training,
        "gaussian_sigma": scores.metrics.get("gaussian", {}).get("sigma"),
        "tv_weight": scores.metrics.get("tv", {}).get("weight"),
        "published": PUBLISHED,
        "summary": summary,
        "total_seconds": None,
    }


def _write_curves(out: Path, data: FoamData, scores: FoamScores, summary: dict[str, Any], mach: dict[str, Any]) -> None:
    """``time_to_quality.png`` and ``summary['time_to_quality']``, from the networks' curves."""
    first = next(iter(scores.training.values()))
    idx = np.searchsorted(data.rows, first["curve_slices"])
    best_classical = summary["best_classical"]
    on_curve = (data.scorer.psnr(scores.volumes[best_classical][idx], idx) if best_classical in scores.volumes
                else None)
    summary["time_to_quality"] = time_to_quality(scores.training, on_curve)
    levels = {f"{QUICK_TARGET[0]:g} dB": QUICK_TARGET[0]}
    if on_curve is not None:
        levels[f"{best_classical} + {TARGET_MARGIN_DB:g} dB"] = on_curve + TARGET_MARGIN_DB
    write_curves(out / "time_to_quality.png", {n: t["curve"] for n, t in scores.training.items()}, levels=levels,
                 title=f"foam: PSNR of {len(idx)} central slices against training time ({machine_line(mach)})")


def _write_outputs(out: Path, data: FoamData, scores: FoamScores, command: str, t_start: float) -> dict[str, Any]:
    """Summarise, write ``metrics.json``, the pictures and ``results.md``; print the report."""
    metrics: dict[str, Any] = scores.metrics
    summary = margin_summary(metrics)
    mach = machine()
    meta = metrics["meta"] = _meta(data, scores, summary, mach, command)
    write_preview(out / "preview.png", scores.images, data.clean[data.centre],
                  f"foam, slice {data.centre_row}, I0={data.i0:g}, K={data.k}")
    if scores.training:
        _write_curves(out, data, scores, summary, mach)
    meta["total_seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    report = render_report(metrics)
    (out / "results.md").write_text(report + "\n")
    log("\n" + report)
    names = ("metrics.json", "preview.png") + (("time_to_quality.png",) if scores.training else ()) + ("results.md",)
    log("\nwrote " + ", ".join(str(out / n) for n in names))
    return metrics


def run_foam_benchmark(out: Path | str, n_slices: int = 8, phantom: str | None = None, minutes: float = 10.0,
                       methods: Sequence[str] | None = None, *, seed: int = 0, i0: float = 10.0,
                       absorption: float = 2.76, k: int = 4, n_angles: int = 1024, n_det: int = 768, n_rows: int = 512,
                       n_pixels: int = 512, supersampling: int = 2, n_spheres: int = 1000,
                       networks: dict[str, NetworkSetup] | None = None, device: str = "auto", progress: bool = True,
                       command: str | None = None) -> dict[str, Any]:
    """Run the foam benchmark and write ``out/metrics.json``, ``out/preview.png``, ``out/results.md``.

    Parameters
    ----------
    out : path
        Output folder (also holds the sinogram/FBP caches and the checkpoints).
    n_slices : int
        Detector rows (= reconstructed slices) centred on the middle row.
    phantom : str, optional
        ``phantom.h5`` path; default the shared reference foam when present, else a
        generated foam; ``"generate"`` forces a foam generated from ``seed``.
    minutes : float
        Training time per network.
    methods : sequence of str, optional
        Subset of :data:`benchmarks.foam_report.ALL_METHODS`; default ``DEFAULT_METHODS``.
    seed, i0, absorption, k
        Noise seed (also the training seed and the seed of a generated foam), incident
        photons, absorption factor, number of splits.
    n_angles, n_det, n_rows, n_pixels, supersampling
        Geometry (:class:`benchmarks.common.FoamGeometry`); defaults are the reference benchmark's.
    n_spheres : int
        Spheres of a generated foam.
    networks : dict, optional
        ``{"n2i_msd": NetworkSetup, ...}`` overrides of :func:`benchmarks.n2i.default_network_setups`.
    device : str
        Torch device for training and inference (``"auto"``: CUDA when available, else CPU).
    command : str, optional
        The command line recorded (default: :func:`foam_command`).

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    t_start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    methods = select_methods(methods)
    geom = FoamGeometry(n_angles=n_angles, n_det=n_det, n_rows=n_rows, n_pixels=n_pixels, supersampling=supersampling)
    setups = {**default_network_setups(), **(networks or {})}
    command = command or foam_command(out, n_slices, minutes, phantom, methods)
    data = prepare_foam(out, n_slices, phantom=phantom, seed=seed, i0=i0, absorption=absorption, k=k, geometry=geom,
                        n_spheres=n_spheres)
    scores = FoamScores()
    for name, score in BASELINES.items():
        if name in methods:
            score(data, scores)
    _train_networks(data, methods, setups, minutes, out, scores, seed=seed, progress=progress, device=device)
    return _write_outputs(out, data, scores, command, t_start)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks foam``."""
    p.add_argument("--out", required=True, help="output folder (also the caches and checkpoints)")
    p.add_argument("--slices", type=int, default=16, help="central slices of the foam (default %(default)s)")
    p.add_argument("--phantom", help="phantom.h5 (default: ../shared/data/foam_n2i/phantom.h5 if present, "
                                     "else a generated foam); 'generate' forces a generated foam")
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per network (default %(default)s)")
    p.add_argument("--methods", nargs="*", default=None,
                   help=f"which methods, of {' '.join(ALL_METHODS)} (default: {' '.join(DEFAULT_METHODS)})")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks foam``."""
    run_foam_benchmark(out=args.out, n_slices=args.slices, phantom=args.phantom, minutes=args.minutes,
                       methods=args.methods)
    return 0
