"""The comparison on the foam benchmark: every method on one reduced foam scan, and the checks
the seminar and the issue ask for.

Usage: ``python -m benchmarks compare --out bench-output/compare [--size 128 --slices 6
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
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tomodenoise.config import ModelConfig

from .common import FoamGeometry, log, machine, machine_line, resolve_phantom, simulate

__all__ = ["METHODS", "add_arguments", "checks", "foam_compare_scan", "main", "n2i_time_to", "run_compare_benchmark",
           "time_saved"]


def _learned(method: str, **kw: Any) -> dict[str, Any]:
    return {"method": method, **kw}


#: the benchmark's methods, the same network (MS-D) for every learned one
METHODS: list[dict[str, Any]] = [
    {"method": "fbp"}, {"method": "sirt"}, {"method": "tv"}, {"method": "gaussian"}, {"method": "bm3d"},
    _learned("noise2self"), _learned("sdr"), _learned("n2i", snapshots=8), _learned("n2i", strategy="1:X", name="n2i_1X"),
    _learned("supervised"), _learned("noise2noise"), _learned("tomogan"), _learned("sbd"), _learned("gaintuning"),
]
#: the methods without a network (no ``model`` entry)
CLASSICAL = ("fbp", "sirt", "tv", "gaussian", "bm3d")
VERDICT = {True: "PASS", False: "FAIL", None: "n/a"}


def foam_compare_scan(out: Path, *, size: int, slices: int, angles: int, i0: float = 10.0,
                      phantom: str | None = None, seed: int = 0):
    """The benchmark's Scan (noisy foam, clean FBP reference, repeat scan)."""
    from tomodenoise.methods import Scan
    from tomodenoise.recon import fbp

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


def _log_findings(found: list[dict[str, Any]], saved: list[dict[str, Any]]) -> None:
    for c in found:
        log(f"  {VERDICT[c['pass']]}  {c['check']}  ({_versus(c)})")
    for t in saved:
        n2i = t["n2i_seconds_to_same_psnr"]
        log(f"  {t['method']}: {t['psnr']:.2f} dB with {t['on_scan_seconds']:.1f} s on the scan after "
            f"{t['pretrain_seconds']:.1f} s of pretraining; N2I from scratch: "
            + ("never reached that PSNR" if n2i is None else
               f"{'' if t['n2i_seconds_exact'] else 'at most '}{n2i:.1f} s to that PSNR"))


def run_compare_benchmark(out: str | Path, *, size: int = 128, slices: int = 6, angles: int = 256, i0: float = 10.0,
                          steps: int = 400, depth: int = 30, methods: Sequence[str] | None = None,
                          phantom: str | None = None, command: str | None = None) -> dict[str, Any]:
    """Every method of :data:`METHODS` (or the labels ``methods``) on the benchmark's foam, then the
    checks; writes ``compare_checks.json`` and appends them to ``compare.md``; returns the record."""
    from tomodenoise.methods.compare import compare

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = command or (f"python -m benchmarks compare --out {out} --size {size} --slices {slices} --angles {angles}"
                          f" --i0 {i0:g} --steps {steps} --depth {depth}"
                          + (f" --methods {','.join(methods)}" if methods else "")
                          + (f" --phantom {phantom}" if phantom else ""))
    scan, source = foam_compare_scan(out, size=size, slices=slices, angles=angles, i0=i0, phantom=phantom)
    model = ModelConfig(name="msd", params={"depth": depth}).model_dump()
    configs = [dict(m, model=model) if m["method"] not in CLASSICAL else dict(m) for m in METHODS]
    if methods:
        configs = [m for m in configs if m.get("name", m["method"]) in set(methods)]
    mach = machine()
    log(f"compare: {scan.name}; phantom {source}; {len(configs)} methods, {steps} steps; {machine_line(mach)}")
    t0 = time.perf_counter()
    result = compare(scan, configs, out, steps=steps, log=log)
    found, saved = checks(result["rows"]), time_saved(result["rows"])
    _log_findings(found, saved)
    record = {"command": command, "machine": mach, "seconds": time.perf_counter() - t0, "phantom": source,
              "checks": found, "time_saved": saved, "rank_check": result["rank_check"], "rows": result["rows"]}
    (out / "compare_checks.json").write_text(json.dumps(record, indent=2, default=str))
    with open(out / "compare.md", "a") as f:
        f.write("\n## Checks\n\n" + "\n".join(f"- {VERDICT[c['pass']]}: {c['check']} ({_versus(c)})" for c in found)
                + f"\n\nCommand: `{command}`; {machine_line(mach)}; {record['seconds']:.0f} s in all.\n")
    log(f"compare: wrote {out / 'compare.md'} ({record['seconds']:.0f} s)")
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks compare``."""
    p.add_argument("--out", default="bench-output/compare", help="output folder (default %(default)s)")
    p.add_argument("--size", type=int, default=128, help="slice size and detector columns (default %(default)s)")
    p.add_argument("--slices", type=int, default=6, help="slices (default %(default)s)")
    p.add_argument("--angles", type=int, default=256, help="projections over 180 degrees (default %(default)s)")
    p.add_argument("--i0", type=float, default=10.0, help="incident photons (default %(default)s)")
    p.add_argument("--steps", type=int, default=400,
                   help="training steps of every learned method (default %(default)s)")
    p.add_argument("--depth", type=int, default=30, help="MS-D depth of every learned method (default %(default)s)")
    p.add_argument("--methods", help="comma-separated labels to run (default: all of METHODS)")
    p.add_argument("--phantom", help="phantom.h5 (default: ../shared/data/foam_n2i/phantom.h5 if present, "
                                     "else a generated foam)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks compare``."""
    command = shlex.join(["python", "-m", "benchmarks", "compare", *getattr(args, "argv", [])])
    run_compare_benchmark(args.out, size=args.size, slices=args.slices, angles=args.angles, i0=args.i0,
                          steps=args.steps, depth=args.depth, methods=args.methods.split(",") if args.methods else None,
                          phantom=args.phantom, command=command)
    return 0
