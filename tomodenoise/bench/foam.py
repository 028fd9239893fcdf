"""The foam benchmark: the original Noise2Inverse experiment, reproduced on N slices.

``tomodenoise bench foam --slices N --out DIR`` runs :func:`run_foam_benchmark`:

1. Simulate and reconstruct (or load from the cache in ``DIR``) ``N`` central slices of the
   reference foam (:func:`tomodenoise.bench.common.prepare_foam`): parallel beam, 1024 angles,
   768 columns, 2x2 supersampling, Poisson noise with ``I0 = 10`` photons, absorption 2.76;
   the clean full-angle FBP is the ground truth, K = 4 interlaced split FBPs the N2I input.
2. Score every method against the clean FBP with ``data_range = max - min`` of the clean
   FBP over the evaluated slices: ``fbp``, ``split``, ``gaussian`` and ``tv`` (both tuned
   by an *oracle* grid search on the ground truth, as in the reference), ``n2i_msd`` and
   ``n2i_unet`` (Noise2Inverse X:1, trained for ``minutes`` each on the noisy splits only;
   the checkpoint is selected by the N2I validation loss on held-out slices), optionally
   ``bm3d``.
3. Write ``DIR/metrics.json`` (every method + a ``meta`` entry), ``DIR/preview.png``,
   ``DIR/time_to_quality.png`` (PSNR against training seconds, one curve per network) and
   ``DIR/results.md``, and print the table.

Every size is a parameter (:class:`FoamGeometry`), so the tests run the same machinery on
a 32 x 32 toy in seconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .classical import bm3d_denoise, gaussian, oracle_search, tv
from .common import PUBLISHED, TARGET_MARGIN_DB, FoamGeometry, Scorer, log, machine, machine_line, prepare_foam
from .n2i import NetworkSetup, default_network_setups, time_to_reach, train_network
from .plots import write_curves

__all__ = ["ALL_METHODS", "DEFAULT_METHODS", "N2I_METHODS", "format_table", "render_report", "run_foam_benchmark"]

#: Methods run by default, in table order.
DEFAULT_METHODS: tuple[str, ...] = ("fbp", "split", "gaussian", "tv", "n2i")
#: Every method the benchmark knows (``bm3d`` is slow on a CPU; the fixed-recipe networks are variants: opt-in).
ALL_METHODS: tuple[str, ...] = DEFAULT_METHODS + ("n2i_msd", "n2i_unet", "bm3d")
#: ``n2i`` is ``tomodenoise run``'s own defaults; the others are explicit variants of it.
N2I_METHODS: dict[str, str] = {"n2i": "msd", "n2i_msd": "msd", "n2i_unet": "unet"}
#: Time-to-quality targets of the foam benchmark: this PSNR [dB] within this many training minutes.
QUICK_TARGET = (20.5, 5.0)


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table: method | PSNR | SSIM | seconds | published reference."""
    lines = ["| method | PSNR [dB] | SSIM | PSNR centre slice [dB] | seconds | published (PSNR / SSIM) |",
             "|---|---:|---:|---:|---:|---|"]
    for name in ALL_METHODS:
        m = metrics.get(name)
        if not m:
            continue
        pub = PUBLISHED.get("n2i_msd" if name == "n2i" else name)
        if pub:
            ref = f"{pub['psnr']:.2f} dB" + (f" / {pub['ssim']:.2f}" if "ssim" in pub else "") + f" ({pub['where']})"
        else:
            ref = "-"
        note = ""
        if "sigma" in m:
            note = f" (sigma {m['sigma']:.2f})"
        elif "weight" in m:
            note = f" (weight {m['weight']:.3g})"
        lines.append(f"| {name}{note} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['psnr_centre_slice']:.2f} | "
                     f"{m['seconds']:.0f} | {ref} |")
    return "\n".join(lines)


def margin_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    n2i = {k: metrics[k]["psnr"] for k in N2I_METHODS if k in metrics}
    base = {k: metrics[k]["psnr"] for k in ("gaussian", "tv") if k in metrics}
    bb = max(base, key=base.get) if base else None
    if not n2i or not base:
        return {"best_n2i": None, "best_classical": bb, "best_classical_psnr": base.get(bb), "margin_db": None,
                "meets_target": None, "target_db": TARGET_MARGIN_DB}
    bn = max(n2i, key=n2i.get)
    margin = n2i[bn] - base[bb]
    return {"best_n2i": bn, "best_classical": bb, "best_classical_psnr": base[bb], "margin_db": margin,
            "meets_target": bool(margin >= TARGET_MARGIN_DB), "target_db": TARGET_MARGIN_DB}


def time_to_quality(training: dict[str, Any], summary: dict[str, Any],
                    classical_on_curve: float | None = None) -> dict[str, Any]:
    """Per network, from its curve: the best PSNR within 5 and 15 training minutes and the
    seconds to reach :data:`QUICK_TARGET` and the best classical filter + 4 dB (on the
    curve's slices: ``classical_on_curve`` is the classical filter's PSNR there)."""
    level, quick_minutes = QUICK_TARGET
    out: dict[str, Any] = {}
    for name, info in training.items():
        curve = info["curve"]

        def best_within(minutes: float) -> float | None:
            vals = [p["psnr"] for p in curve if p["seconds"] <= minutes * 60 + 1e-6]
            return max(vals) if vals else None

        row = {"psnr_5min": best_within(quick_minutes), "psnr_15min": best_within(15.0),
               f"seconds_to_{level:g}dB": time_to_reach(curve, level)}
        if classical_on_curve is not None:
            row["classical_on_curve_slices"] = classical_on_curve
            row["seconds_to_classical_plus_4dB"] = time_to_reach(curve, classical_on_curve + TARGET_MARGIN_DB)
        out[name] = row
    return out


def write_preview(path: Path, images: dict[str, np.ndarray], clean: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["clean"] + [n for n in ("fbp", "gaussian", "tv", "n2i", "n2i_msd", "n2i_unet", "bm3d") if n in images]
    vmin, vmax = float(clean.min()), float(clean.max())
    ncol = 3 if len(names) > 4 else len(names)
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 4.5 * nrow), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, n in zip(axes.ravel(), names):
        ax.imshow(clean if n == "clean" else images[n], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(n if n == "clean" else f"{n}", fontsize=11)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_foam_benchmark(
    out: Path | str,
    n_slices: int = 8,
    phantom: str | None = None,
    minutes: float = 10.0,
    methods: Sequence[str] | None = None,
    *,
    seed: int = 0,
    i0: float = 10.0,
    absorption: float = 2.76,
    k: int = 4,
    n_angles: int = 1024,
    n_det: int = 768,
    n_rows: int = 512,
    n_pixels: int = 512,
    supersampling: int = 2,
    n_spheres: int = 1000,
    networks: dict[str, NetworkSetup] | None = None,
    device: str = "auto",
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
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
        Subset of :data:`ALL_METHODS`; default :data:`DEFAULT_METHODS`.
    seed, i0, absorption, k
        Noise seed (also the training seed and the seed of a generated foam), incident
        photons, absorption factor, number of splits.
    n_angles, n_det, n_rows, n_pixels, supersampling
        Geometry (:class:`FoamGeometry`); defaults are the reference benchmark's.
    n_spheres : int
        Spheres of a generated foam.
    networks : dict, optional
        ``{"n2i_msd": NetworkSetup, "n2i_unet": NetworkSetup}`` overrides of
        :func:`default_network_setups`.
    device : str
        Torch device for training and inference (``"auto"``: CUDA when available, else CPU).

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    t_start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    methods = list(DEFAULT_METHODS if methods is None or len(methods) == 0 else methods)
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
    methods = [m for m in ALL_METHODS if m in methods]
    geom = FoamGeometry(n_angles=n_angles, n_det=n_det, n_rows=n_rows, n_pixels=n_pixels, supersampling=supersampling)
    setups = default_network_setups()
    setups.update(networks or {})
    if command is None:
        command = (f"tomodenoise bench foam --slices {n_slices} --out {out} --minutes {minutes:g}"
                   + (f" --phantom {phantom}" if phantom else "")
                   + (f" --methods {' '.join(methods)}" if list(methods) != list(DEFAULT_METHODS) else ""))
    data = prepare_foam(out, n_slices, phantom=phantom, seed=seed, i0=i0, absorption=absorption, k=k, geometry=geom,
                        n_spheres=n_spheres)
    rows, centre, centre_row = data.rows, data.centre, data.centre_row
    clean, noisy, splits, scorer = data.clean, data.noisy, data.splits, data.scorer
    rtimes, rec_cached, sim_info, phantom_source = data.recon_seconds, data.recon_cached, data.simulation, data.phantom

    metrics: dict[str, Any] = {}
    images: dict[str, np.ndarray] = {}
    volumes: dict[str, np.ndarray] = {}  # the classical filters' whole results (for the curves' levels)
    training: dict[str, Any] = {}

    def done(name: str) -> None:
        m = metrics[name]
        log(f"  {name:9s} PSNR {m['psnr']:7.2f} dB  SSIM {m['ssim']:.3f}  {m['seconds']:7.1f} s")

    if "fbp" in methods:
        metrics["fbp"] = scorer.score(noisy, rtimes["fbp"], cached=rec_cached)
        images["fbp"] = noisy[centre]
        done("fbp")
    if "split" in methods:
        metrics["split"] = scorer.score(splits[0], rtimes["split"], cached=rec_cached)
        done("split")
    if "gaussian" in methods:
        t0 = time.perf_counter()
        grid = np.geomspace(0.5, 12.0, 12)
        best, _, tried = oracle_search(lambda s: scorer.psnr(gaussian(noisy, s)), grid, refine=4)
        t1 = time.perf_counter()
        img = gaussian(noisy, best)
        t_one = time.perf_counter() - t1
        metrics["gaussian"] = scorer.score(img, time.perf_counter() - t0, sigma=best, seconds_single=t_one,
                                           tuning="oracle: sigma maximising PSNR vs ground truth",
                                           grid=[[float(a), float(b)] for a, b in tried])
        images["gaussian"], volumes["gaussian"] = img[centre], img
        done("gaussian")
    if "tv" in methods:
        t0 = time.perf_counter()
        # TV weight in the image's units: grid relative to the clean data range
        grid = scorer.data_range * np.geomspace(0.05, 3.0, 8)
        tune_idx = np.arange(len(rows))
        if len(rows) > 8:  # tune on the 8 central slices, apply to all
            tune_idx = np.arange(centre - 4, centre + 4).clip(0, len(rows) - 1)
        sub = Scorer(clean[tune_idx], 0)
        sub.data_range = scorer.data_range
        best, _, tried = oracle_search(lambda w: sub.psnr(tv(noisy[tune_idx], w)), grid, refine=3)
        t1 = time.perf_counter()
        img = tv(noisy, best)
        t_one = time.perf_counter() - t1
        metrics["tv"] = scorer.score(img, time.perf_counter() - t0, weight=best, seconds_single=t_one,
                                     tuning="oracle: weight maximising PSNR vs ground truth",
                                     grid=[[float(a), float(b)] for a, b in tried])
        images["tv"], volumes["tv"] = img[centre], img
        done("tv")
    if "bm3d" in methods:
        t0 = time.perf_counter()
        img, sigma = bm3d_denoise(noisy)
        metrics["bm3d"] = scorer.score(img, time.perf_counter() - t0, sigma_psd=sigma,
                                       tuning="sigma from skimage.restoration.estimate_sigma (no ground truth)")
        images["bm3d"] = img[centre]
        done("bm3d")
    for name in N2I_METHODS:
        if name not in methods:
            continue
        t0 = time.perf_counter()
        img, info = train_network(name, setups[name], data, minutes, out, seed=seed, progress=progress, device=device)
        metrics[name] = scorer.score(img, time.perf_counter() - t0)
        training[name] = info
        images[name] = img[centre]
        done(name)
        np.save(out / f"{name}_denoised.npy", img)

    summary = margin_summary(metrics)
    mach = machine()
    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": mach,
        "command": command,
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "n_slices": n_slices,
        "slice_indices": rows.tolist(),
        "centre_slice": int(centre_row),
        "phantom": phantom_source,
        "geometry": {**asdict(geom), "pixel_size": geom.pixel_size,
                     "angles": f"linspace(0, pi, {geom.n_angles}, endpoint=False)"},
        "noise": {"model": "Poisson", "i0": i0, "absorption": absorption, "seed": seed,
                  "zero_count_fraction": sim_info.get("zero_count_fraction")},
        "splits": {"k": k, "strategy": "X:1", "recon": "FBP ram-lak"},
        "data_range": scorer.data_range,
        "ground_truth": "FBP of the clean projections, all angles",
        "simulation": sim_info,
        "reconstruction_seconds": rtimes,
        "training": training,
        "gaussian_sigma": metrics.get("gaussian", {}).get("sigma"),
        "tv_weight": metrics.get("tv", {}).get("weight"),
        "published": PUBLISHED,
        "summary": summary,
        "total_seconds": None,
    }
    metrics["meta"] = meta

    write_preview(out / "preview.png", images, clean[centre],
                   f"foam, slice {centre_row}, I0={i0:g}, K={k}")
    if training:
        first = next(iter(training.values()))
        idx = np.searchsorted(rows, first["curve_slices"])
        best_classical = summary["best_classical"]
        on_curve = scorer.psnr(volumes[best_classical][idx], idx) if best_classical in volumes else None
        summary["time_to_quality"] = time_to_quality(training, summary, on_curve)
        levels = {f"{QUICK_TARGET[0]:g} dB": QUICK_TARGET[0]}
        if on_curve is not None:
            levels[f"{best_classical} + {TARGET_MARGIN_DB:g} dB"] = on_curve + TARGET_MARGIN_DB
        write_curves(out / "time_to_quality.png", {n: t["curve"] for n, t in training.items()}, levels=levels,
                     title=f"foam: PSNR of {len(idx)} central slices against training time ({machine_line(mach)})")
    meta["total_seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    report = render_report(metrics)
    (out / "results.md").write_text(report + "\n")
    log("\n" + report)
    names = ("metrics.json", "preview.png") + (("time_to_quality.png",) if training else ()) + ("results.md",)
    log("\nwrote " + ", ".join(str(out / n) for n in names))
    return metrics


def render_report(metrics: dict[str, Any]) -> str:
    meta = metrics["meta"]
    s = meta["summary"]
    lines = [format_table(metrics), ""]
    if s["margin_db"] is not None:
        verdict = "MEETS" if s["meets_target"] else "does NOT meet"
        lines.append(f"Best N2I ({s['best_n2i']}) vs best classical ({s['best_classical']}): "
                     f"{s['margin_db']:+.2f} dB -> {verdict} the target (>= {s['target_db']:g} dB).")
    for name, info in meta["training"].items():
        lines.append(f"{name}: {info['model']} {info['params']} ({info['n_parameters']} parameters), "
                     f"{info['epochs_run']} epochs ({info['steps']} steps) in {info['training_seconds'] / 60:.1f} min "
                     f"of training, best epoch {info['best_epoch']}, patches {info['patch_size']}, batch "
                     f"{info['batch_size']}, lr {info['lr']:g} ({info['schedule']}); inference "
                     f"{info['inference_seconds']:.0f} s.")
    ttq = s.get("time_to_quality")
    if ttq:
        level = QUICK_TARGET[0]
        lines += ["", f"Time to quality (PSNR of the curve's central slices, training minutes; "
                      f"`time_to_quality.png`):", "",
                  f"| network | best PSNR within 5 min | within 15 min | minutes to {level:g} dB | "
                  "minutes to best classical + 4 dB |", "|---|---:|---:|---:|---:|"]

        def fmt(v: float | None, scale: float = 1.0, unit: str = "") -> str:
            return "not reached" if v is None else f"{v / scale:.2f}{unit}"

        for name, row in ttq.items():
            lines.append(f"| {name} | {fmt(row['psnr_5min'])} | {fmt(row['psnr_15min'])} | "
                         f"{fmt(row[f'seconds_to_{level:g}dB'], 60)} | "
                         f"{fmt(row.get('seconds_to_classical_plus_4dB'), 60)} |")
        lines.append("")
    lines.append(f"Slices: {meta['n_slices']} (detector rows {meta['slice_indices'][0]}..{meta['slice_indices'][-1]}); "
                 f"phantom: {meta['phantom']}; data_range {meta['data_range']:.4f}.")
    lines.append(f"Machine: {machine_line(meta['machine'])}.")
    lines.append(f"Date: {meta['date']}. Total {meta['total_seconds'] / 60:.1f} min.")
    lines.append(f"Reproduce: `{meta['command']}`")
    return "\n".join(lines)
