"""The XRD-CT benchmark on a simulated scan with known truth.

``python -m benchmarks xrdct --out DIR [--minutes M]`` runs :func:`run_xrdct_benchmark`: a
pencil-beam XRD-CT phantom (as ``tomodenoise simulate xrdct`` writes it); PSNR per channel and
over the whole spectrum, the spectra of a few pixels, and the "shorter acquisition"
experiment: N2I at a fraction of the counts against the FBP at full counts (how much
acquisition time the denoising saves at equal quality). Every network is trained by the
real pipeline (:mod:`benchmarks.modalities`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .common import log, machine, machine_line, repo_root
from .modalities import fbp_and_denoised, run_config, run_pipeline, write_result

__all__ = ["add_arguments", "main", "run_xrdct_benchmark"]


def _default_ingredients() -> Path | None:
    """``../shared/data/xrdct_ingredients`` beside the checkout, when it holds ``Patterns.h5``."""
    p = repo_root().parent / "shared" / "data" / "xrdct_ingredients"
    return p if (p / "Patterns.h5").exists() else None


def run_xrdct_benchmark(out: Path, *, minutes: float = 3.0, size: int = 96, n_angles: int = 120,
                        n_channels: int = 64, counts: float = 200.0, fractions: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125),
                        ingredients: str | None = None, seed: int = 0) -> dict[str, Any]:
    """N2I on a simulated XRD-CT scan at full and reduced counts, against the FBP at full counts."""
    from tomodenoise.report import spectrum_pixels, write_spectra
    from tomodenoise.simulate.xrdct_phantom import simulate_xrdct_scan

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
        cfg = run_config(sim["scan"], out / "runs", tag, minutes, model={"name": "msd", "params": {"depth": 30, "width": 1}})
        metrics, store, seconds = run_pipeline(cfg, truth)
        fbp, den = fbp_and_denoised(store)
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
    cmd = f"python -m benchmarks xrdct --out {out} --minutes {minutes:g}"
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
    write_result(out, "xrdct", result, md)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks xrdct``."""
    p.add_argument("--out", required=True, help="output folder (the scans, the runs, xrdct.json, xrdct.md)")
    p.add_argument("--minutes", type=float, default=3.0, help="training minutes of each network (default %(default)s)")
    p.add_argument("--ingredients", help="folder with Patterns.h5 and catalyst_particles_*.tif (default: "
                                         "../shared/data/xrdct_ingredients if present, else built-in phases)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks xrdct``."""
    run_xrdct_benchmark(Path(args.out), minutes=args.minutes, ingredients=args.ingredients)
    return 0
