"""The comparison on the foam benchmark: every method on one reduced foam scan, and the checks
the seminar and the issue ask for.

Usage: ``python -m tomodenoise.bench.compare --out bench-output/compare [--size 128 --slices 6
--angles 256 --steps 400]``. The scan is the reference foam (``phantom.h5``; a generated foam
without it) at the benchmark's noise model (I0 = 10, absorption 2.76), ``size`` x ``size``
slices from ``size`` detector columns covering the cylinder, ``angles`` projections over
180 degrees; a second noise draw is the repeat scan for Noise2Noise; the reference is the FBP of
the clean projections. Prints and writes (``compare_checks.json``, ``compare.md``,
``panel.png``) what it measured, with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from .common import FoamGeometry, log, machine, machine_line, resolve_phantom, simulate

__all__ = ["checks", "foam_compare_scan", "main", "METHODS", "n2i_time_to", "time_saved"]


def _learned(method: str, **kw: Any) -> dict[str, Any]:
    return {"method": method, **kw}


#: the benchmark's methods, the same network (MS-D) for every learned one
METHODS: list[dict[str, Any]] = [
    {"method": "fbp"}, {"method": "sirt"}, {"method": "tv"}, {"method": "gaussian"}, {"method": "bm3d"},
    _learned("noise2self"), _learned("sdr"), _learned("n2i", snapshots=8), _learned("n2i", strategy="1:X", name="n2i_1X"),
    _learned("supervised"), _learned("noise2noise"), _learned("tomogan"), _learned("sbd"), _learned("gaintuning"),
]


def foam_compare_scan(out: Path, *, size: int, slices: int, angles: int, i0: float = 10.0,
                      phantom: str | None = None, seed: int = 0):
    """The benchmark's Scan (noisy foam, clean FBP reference, repeat scan)."""
    from ..methods import Scan
    from ..recon import fbp

    geom = FoamGeometry(n_angles=angles, n_det=size, n_rows=size, n_pixels=size, supersampling=2)
    rows = geom.rows(slices)
    spheres, source, tag = resolve_phantom(phantom, seed, 1000)
    clean_sino, noisy, _ = simulate(out, geom, rows, spheres, tag, seed, i0, 2.76)
    _, noisy2, _ = simulate(out, geom, rows, spheres, tag, seed + 1, i0, 2.76)
    ang = geom.angles()
    clean = fbp(clean_sino, ang)
    second = Scan(sino=noisy2, angles=ang, clean=clean, i0=i0, name="foam-repeat")
    scan = Scan(sino=noisy, angles=ang, clean=clean, clean_sino=clean_sino, second=second, i0=i0,
                name=f"foam {size}px x {slices} slices, {angles} angles, I0 {i0:g}")
    return scan, source


def checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The orderings and margins the issue asks for, each PASS/FAIL (or n/a when a row is missing)."""
    p = {r["label"]: r["psnr"] for r in rows if r["status"] == "ok" and r["psnr"] is not None}

    def gt(a: str, b: str, margin: float = 0.0, what: str = "") -> dict[str, Any]:
        ok = None if a not in p or b not in p else p[a] > p[b] + margin
        return {"check": what or f"{a} > {b}" + (f" {margin:+g} dB" if margin else ""), "a": p.get(a),
                "b": p.get(b), "a_label": a, "b_label": b, "pass": ok}

    return [
        gt("sdr", "noise2self", what="reconstruct-split-denoise (noise2self) < split-denoise-reconstruct (sdr)"),
        gt("n2i", "sdr", what="split-denoise-reconstruct (sdr) < split-reconstruct-denoise (n2i)"),
        gt("n2i", "n2i_1X", what="X:1 > 1:X"),
        gt("n2i", "supervised", -1.0, what="n2i within 1 dB of supervised (n2i > supervised - 1 dB)"),
        gt("n2i", "bm3d"), gt("n2i", "tv"), gt("n2i", "noise2self"),
    ]


def _versus(c: dict[str, Any]) -> str:
    def one(label: str, v: float | None) -> str:
        return f"{label} " + ("missing" if v is None else f"{v:.2f} dB")

    return f"{one(c['a_label'], c['a'])} vs {one(c['b_label'], c['b'])}"


def n2i_time_to(rows: list[dict[str, Any]], target: float) -> tuple[float | None, bool]:
    """Training seconds N2I needed to reach PSNR ``target``, interpolated between its snapshots,
    and whether that is exact (False: already reached at the first snapshot, an upper bound).
    ``(None, False)`` when N2I never reached it."""
    n2i = next((r for r in rows if r["label"] == "n2i" and r["status"] == "ok"), None)
    if n2i is None:
        return None, False
    pts = sorted((s["train_seconds"], s["psnr"]) for s in n2i["snapshots"]
                 if s.get("train_seconds") is not None and s.get("psnr") is not None)
    if n2i["train_seconds"] is not None and n2i["psnr"] is not None:
        pts.append((n2i["train_seconds"], n2i["psnr"]))
    prev: tuple[float, float] | None = None
    for t, q in pts:
        if q >= target:
            if prev is None:
                return float(t), False
            if q == prev[1]:
                return float(t), True
            return float(prev[0] + (t - prev[0]) * (target - prev[1]) / (q - prev[1])), True
        prev = (t, q)
    return None, False


def time_saved(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For SBD and GainTuning: their time against N2I's from scratch to the same PSNR.

    ``on_scan_seconds`` is what the target scan costs once the pretrained network exists (SBD:
    none, it is only applied; GainTuning: tuning the gains); the pretraining (simulation and
    training on simulated foams) can serve every scan of the same geometry and noise level,
    so both savings are given: with the network reused, and with its pretraining counted.
    """
    out = []
    for r in rows:
        if r["method"] not in ("sbd", "gaintuning") or r["status"] != "ok" or r["psnr"] is None:
            continue
        pre = float(r["params"].get("pretrain_seconds") or 0.0)
        on_scan = 0.0 if r["method"] == "sbd" else float(r["train_seconds"] or 0.0)
        n2i, exact = n2i_time_to(rows, r["psnr"])
        out.append({"method": r["label"], "psnr": r["psnr"], "on_scan_seconds": on_scan, "pretrain_seconds": pre,
                    "n2i_seconds_to_same_psnr": n2i, "n2i_seconds_exact": exact,
                    "saved_reused": None if n2i is None else n2i - on_scan,
                    "saved_with_pretraining": None if n2i is None else n2i - on_scan - pre})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m tomodenoise.bench.compare", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-output/compare")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--angles", type=int, default=256)
    ap.add_argument("--i0", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--depth", type=int, default=30, help="MS-D depth of every learned method")
    ap.add_argument("--methods", help="comma-separated labels to run (default all of METHODS)")
    ap.add_argument("--phantom")
    args = ap.parse_args(argv)
    from ..methods.compare import compare

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scan, source = foam_compare_scan(out, size=args.size, slices=args.slices, angles=args.angles, i0=args.i0,
                                     phantom=args.phantom)
    model = ModelConfig(name="msd", params={"depth": args.depth}).model_dump()
    methods = [dict(m, model=model) if m["method"] not in ("fbp", "sirt", "tv", "gaussian", "bm3d") else dict(m)
               for m in METHODS]
    if args.methods:
        keep = set(args.methods.split(","))
        methods = [m for m in methods if m.get("name", m["method"]) in keep]
    mach = machine()
    log(f"compare: {scan.name}; phantom {source}; {len(methods)} methods, {args.steps} steps; {machine_line(mach)}")
    t0 = time.perf_counter()
    result = compare(scan, methods, out, steps=args.steps, log=log)
    found = checks(result["rows"])
    for c in found:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[c["pass"]]
        log(f"  {verdict}  {c['check']}  ({_versus(c)})")
    saved = time_saved(result["rows"])
    for t in saved:
        n2i = t["n2i_seconds_to_same_psnr"]
        log(f"  {t['method']}: {t['psnr']:.2f} dB with {t['on_scan_seconds']:.1f} s on the scan after "
            f"{t['pretrain_seconds']:.1f} s of pretraining; N2I from scratch: "
            + ("never reached that PSNR" if n2i is None else
               f"{'' if t['n2i_seconds_exact'] else 'at most '}{n2i:.1f} s to that PSNR"))
    cmd = "python -m tomodenoise.bench.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    record = {"command": cmd, "machine": mach, "seconds": time.perf_counter() - t0, "phantom": source,
              "checks": found, "time_saved": saved, "rank_check": result["rank_check"], "rows": result["rows"]}
    (out / "compare_checks.json").write_text(json.dumps(record, indent=2, default=str))
    with open(out / "compare.md", "a") as f:
        f.write("\n## Checks\n\n" + "\n".join(
            f"- {({True: 'PASS', False: 'FAIL', None: 'n/a'})[c['pass']]}: {c['check']} "
            f"({_versus(c)})" for c in found) + f"\n\nCommand: `{cmd}`; {machine_line(mach)}; "
            f"{record['seconds']:.0f} s in all.\n")
    log(f"compare: wrote {out / 'compare.md'} ({record['seconds']:.0f} s)")
    return record


if __name__ == "__main__":  # pragma: no cover
    main()
