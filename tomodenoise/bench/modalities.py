"""Benchmarks of the dynamic 4D and XRD-CT modalities on simulated scans with known truth.

- :func:`run_dynamic_benchmark` (``tomodenoise bench dynamic``): a continuous-rotation scan
  of a moving 2D+t phantom (interlaced steps, a non-integer number of projections per step);
  PSNR per time step of FBP, N2I, and N2I with the neighbouring time steps as extra input
  channels (the time-neighbour variant), and a strip of a few time steps.
- :func:`run_xrdct_benchmark` (``tomodenoise bench xrdct``): a pencil-beam XRD-CT phantom;
  PSNR per channel and over the whole spectrum, the spectra of a few pixels, and the
  "shorter acquisition" experiment: N2I at a fraction of the counts against the FBP at full
  counts (how much acquisition time the denoising saves at equal quality).

Both run the real pipeline (:func:`tomodenoise.pipeline.run`, no Prefect) on the scans that
``tomodenoise simulate dynamic|xrdct`` writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig
from .common import log, machine, machine_line, repo_root

__all__ = ["run_dynamic_benchmark", "run_xrdct_benchmark"]


def _config(scan: Path, out: Path, scan_id: str, minutes: float, **sections: Any) -> RunConfig:
    base = {
        "input": {"path": str(scan), "scan_id": scan_id},
        "splits": {"k": 4},
        "model": {"name": "msd", "params": {"depth": 30, "width": 1}},
        "train": {"epochs": 1000, "batch_size": 8, "patch_size": 64, "patches_per_slice": 2, "lr": 2e-3, "neighbours": 0,
                  "early_stopping": 0, "max_minutes": minutes, "progress": False},
        "compute": {"cluster": "threads"},
        "output": {"root": str(out), "previews": 0},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return RunConfig.model_validate(base)


def _run(cfg: RunConfig, reference: np.ndarray) -> tuple[dict[str, Any], Any, float]:
    from .. import pipeline

    t0 = time.perf_counter()
    store = pipeline.run(cfg, reference=reference, progress=False)
    metrics = json.loads((store.report_dir / "metrics.json").read_text())
    return metrics, store, time.perf_counter() - t0


def _images(store: Any) -> tuple[np.ndarray, np.ndarray]:
    """FBP (mean of the splits) and denoised, both ``(time, channel, z, y, x)``."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)
    return rec.mean(axis=0), np.asarray(store.array("denoised")[:], dtype=np.float32)


def _write(out: Path, name: str, result: dict[str, Any], md: list[str]) -> None:
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def run_dynamic_benchmark(out: Path, *, minutes: float = 5.0, size: int = 128, n_slices: int = 4, n_steps: int = 8,
                          projections_per_step: float = 100.5, i0: float = 300.0, seed: int = 0) -> dict[str, Any]:
    """FBP, N2I and N2I with time neighbours on a simulated dynamic scan; PSNR per time step."""
    from ..report import write_grid
    from ..simulate.dynamic import simulate_dynamic_scan

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
        cfg = _config(sim["scan"], out / "runs", "n2i" if not extra else "n2i_time", minutes,
                      time={"window": "angle", "span_deg": 180.0}, train=extra)
        metrics, store, seconds = _run(cfg, truth)
        fbp, den = _images(store)
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
    cmd = (f"tomodenoise bench dynamic --out {out} --minutes {minutes:g}")
    md = [f"Dynamic 4D ({machine_line(m)}; {n_steps} steps x {projections_per_step:g} projections, "
          f"{size}x{size}x{n_slices}, I0 {i0:g}; {minutes:g} min training each)", "",
          "| time step (s) | FBP | N2I | N2I + time neighbours |", "|---|---|---|---|"]
    md += [f"| {e['time']:.3f} | {e['fbp']:.2f} | {e['N2I']:.2f} | {e['N2I + time neighbours']:.2f} |" for e in per_step]
    o = result["overall"]
    md += [f"| all | {o['FBP']:.2f} | {o['N2I']:.2f} | {o['N2I + time neighbours']:.2f} |", "",
           f"strip: {strip}", f"reproduce: `{cmd}`"]
    _write(out, "dynamic", result, md)
    return result


def _default_ingredients() -> Path | None:
    p = repo_root().parent / "shared" / "data" / "xrdct_ingredients"
    return p if (p / "Patterns.h5").exists() else None


def run_xrdct_benchmark(out: Path, *, minutes: float = 3.0, size: int = 96, n_angles: int = 120,
                        n_channels: int = 64, counts: float = 200.0, fractions: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125),
                        ingredients: str | None = None, seed: int = 0) -> dict[str, Any]:
    """N2I on a simulated XRD-CT scan at full and reduced counts, against the FBP at full counts."""
    from ..report import spectrum_pixels, write_spectra
    from ..simulate.xrdct_phantom import simulate_xrdct_scan

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ingr = Path(ingredients) if ingredients else _default_ingredients()
    levels = []
    for f in fractions:
        tag = f"c{f:g}".replace(".", "p")
        sim = simulate_xrdct_scan(out / f"xrdct_{tag}.h5", size=size, n_angles=n_angles, n_channels=n_channels,
                                  counts=counts * f, ingredients=ingr, seed=seed)
        truth = np.load(sim["reference"])
        log(f"xrdct: counts x{f:g}, {minutes:g} min of training")
        cfg = _config(sim["scan"], out / "runs", tag, minutes, model={"name": "msd", "params": {"depth": 30, "width": 1}})
        metrics, store, seconds = _run(cfg, truth)
        fbp, den = _images(store)
        levels.append({"fraction": f, "counts": counts * f, "fbp_psnr": metrics["fbp"]["psnr"],
                       "n2i_psnr": metrics["denoised"]["psnr"],
                       "fbp_psnr_channels": metrics["fbp"]["psnr_mean_over_channels"],
                       "n2i_psnr_channels": metrics["denoised"]["psnr_mean_over_channels"],
                       "per_channel": metrics["per_channel"], "seconds": round(seconds, 1)})
        if f == 1.0:
            full = {"truth": truth, "fbp": fbp, "den": den, "channels": np.asarray(sim["channels"])}
    full_fbp = next(e["fbp_psnr"] for e in levels if e["fraction"] == 1.0)
    ok = [e["fraction"] for e in levels if e["n2i_psnr"] >= full_fbp]
    saving = {"fbp_full_counts_psnr": full_fbp, "smallest_fraction_at_equal_quality": min(ok) if ok else None}
    # spectra of three pixels: the brightest pixel of three strong channels
    pix = spectrum_pixels(full["truth"][0, :, 0])
    spectra = {name: np.stack([arr[0, :, 0, y, x] for y, x in pix])
               for name, arr in (("truth", full["truth"]), ("FBP", full["fbp"]), ("denoised", full["den"]))}
    spath = write_spectra(out / "xrdct_spectra.png", full["channels"], spectra, [f"pixel (y={y}, x={x})" for y, x in pix],
                          channel_label="q (1/angstrom)", title="XRD-CT phantom, full counts: truth, FBP, N2I")
    m = machine()
    result = {"machine": m, "minutes": minutes, "ingredients": str(ingr) if ingr else "built-in",
              "scan": {"size": size, "angles": n_angles, "channels": n_channels, "counts": counts},
              "levels": levels, "saving": saving, "spectra": str(spath)}
    cmd = f"tomodenoise bench xrdct --out {out} --minutes {minutes:g}"
    md = [f"XRD-CT ({machine_line(m)}; {size}x{size}, {n_angles} angles over 360 deg, {n_channels} channels, "
          f"ingredients {result['ingredients']}; {minutes:g} min training each)", "",
          "| counts | FBP PSNR (spectrum) | N2I PSNR (spectrum) | FBP PSNR (mean/channel) | N2I PSNR (mean/channel) |",
          "|---|---|---|---|---|"]
    md += [f"| x{e['fraction']:g} ({e['counts']:g}) | {e['fbp_psnr']:.2f} | {e['n2i_psnr']:.2f} | "
           f"{e['fbp_psnr_channels']:.2f} | {e['n2i_psnr_channels']:.2f} |" for e in levels]
    frac = saving["smallest_fraction_at_equal_quality"]
    md += ["", f"shorter acquisition: N2I at x{frac:g} of the counts reaches the FBP at full counts "
               f"({full_fbp:.2f} dB): {1 / frac:g}x less acquisition time" if frac else
           f"shorter acquisition: no reduced-count N2I run reached the full-count FBP ({full_fbp:.2f} dB)",
           f"spectra: {spath}", f"reproduce: `{cmd}`"]
    _write(out, "xrdct", result, md)
    return result
