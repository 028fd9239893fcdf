"""Real scans with ``run``'s own defaults: the quality a user gets, with no ground truth.

``python -m benchmarks real [SCAN ...] --out DIR [--minutes M]`` runs the whole pipeline (the
plain in-process runner, ``run --no-prefect``) on each scan with the default configuration
(only ``train.max_minutes`` when ``--minutes`` is given, and the ``--set`` overrides:
``key=value`` for every scan, ``STEM:key=value`` for one, e.g. a centre the preview showed
to be wrong) and prints, per scan, the figures of
the quality check (:mod:`tomodenoise.quality`): contrast kept, edge gradient kept, noise
removed, the held-out N2I losses of the network and of the tuned Gaussian, and whether the
targets are met. Default scan: the real APS tooth shipped with the package. The previews
(FBP | denoised | difference, and the centre preview) are listed with their paths.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import time
from pathlib import Path
from typing import Any, Sequence

from .common import log, machine, machine_line

__all__ = ["TARGETS", "add_arguments", "main", "run_real_benchmark"]

#: The targets of issue 19 on real scans with the default command.
TARGETS = {"contrast_kept": 0.9, "edge_gradient_kept": 0.8, "noise_removed": 0.8}


def _meets(q: dict[str, Any]) -> dict[str, bool | None]:
    fig, h = q.get("figures") or {}, q.get("heldout") or {}
    out: dict[str, bool | None] = {k: (None if fig.get(k) is None else bool(fig[k] >= v)) for k, v in TARGETS.items()}
    out["beats_gaussian"] = None if not h else bool(h["beats_gaussian"])
    return out


def _row(name: str, r: dict[str, Any]) -> str:
    q = r["quality"]
    fig, h, ok = q.get("figures") or {}, q.get("heldout") or {}, r["meets"]

    def f(key: str) -> str:
        v = fig.get(key)
        return "n/a" if v is None else f"{v:.2f}{'' if ok.get(key) else ' (below)'}"

    gain = h.get("gain_over_gaussian_db")
    loss = "n/a" if not h else (f"{h['network']:.4g} / {h['gaussian']:.4g}"
                                f"{'' if h['beats_gaussian'] else ' (below)'}")
    b = r.get("budget") or {}
    return (f"| {name} | {f('contrast_kept')} | {f('edge_gradient_kept')} | {f('noise_removed')} | {loss} | "
            f"{'n/a' if gain is None else f'{gain:+.2f}'} | {b.get('steps', 'n/a')} | {r['train_minutes']:.1f} | "
            f"{q.get('status')} | {'yes' if all(v for v in ok.values() if v is not None) else 'no'} |")


def _overrides_for(scan: Path, overrides: Sequence[str]) -> list[str]:
    """``key=value`` for every scan, ``STEM:key=value`` for the scan named ``STEM`` only."""
    out = []
    for item in overrides:
        head = item.split("=", 1)[0]
        if ":" in head:
            stem, item = item.split(":", 1)
            if stem != scan.stem:
                continue
        out.append(item)
    return out


def run_real_benchmark(out: str | Path, scans: Sequence[str] | None = None, minutes: float | None = None,
                       overrides: Sequence[str] = (), command: str | None = None) -> dict[str, Any]:
    """Run ``run``'s defaults on each scan; write ``out/real.json`` and ``out/results.md``; print the table.

    ``command``: the command line recorded (default: the ``python -m benchmarks real`` one of these arguments).
    """
    from tomodenoise.config import RunConfig, apply_sets
    from tomodenoise.demo import tooth_path
    from tomodenoise.pipeline import run

    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = command or shlex.join(["python", "-m", "benchmarks", "real", *(scans or []), "--out", str(out)]
                                    + (["--minutes", f"{minutes:g}"] if minutes else [])
                                    + [a for o in overrides for a in ("--set", o)])
    scans = list(scans or [str(tooth_path())])
    results: dict[str, Any] = {}
    for scan in scans:
        cfg = RunConfig()
        cfg.input.path = str(Path(scan).expanduser().resolve())
        cfg.output.root = str(out / "runs")
        cfg.output.overwrite = True
        if minutes:
            cfg.train.max_minutes = float(minutes)
        cfg = apply_sets(cfg, _overrides_for(Path(scan), overrides))
        t0 = time.perf_counter()
        store = run(cfg)
        seconds = time.perf_counter() - t0
        m = json.loads((store.report_dir / "metrics.json").read_text())
        train = store.stage_info("train") or {}
        q = m.get("quality") or {}
        name = store.root.name
        results[name] = {"scan": cfg.input.path, "quality": q, "meets": _meets(q), "budget": train.get("budget"),
                         "train_minutes": float(train.get("seconds") or 0.0) / 60, "seconds": seconds,
                         "store": str(store.root), "previews": sorted(str(p) for p in store.report_dir.glob("*.png")),
                         "overrides": list(overrides), "max_minutes": minutes}
    meta = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
            "command": command, "targets": TARGETS}
    lines = ["| scan | contrast kept (>= 0.9) | edge gradient kept (>= 0.8) | noise removed (>= 0.8) | held-out N2I "
             "loss network / Gaussian | gain over Gaussian [dB] | steps | training min | quality | targets met |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    lines += [_row(n, r) for n, r in results.items()]
    lines += ["", f"Machine: {machine_line(meta['machine'])}.", f"Date: {meta['date']}.",
              f"Reproduce: `{command}`", "", "Previews:"]
    for n, r in results.items():
        lines += [f"- {n}: " + ", ".join(r["previews"])]
    report = "\n".join(lines)
    (out / "real.json").write_text(json.dumps({"meta": meta, "scans": results}, indent=2, default=str))
    (out / "results.md").write_text(report + "\n")
    log("\n" + report)
    return {"meta": meta, "scans": results}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks real``."""
    p.add_argument("scans", nargs="*", help="scans to run with run's defaults (default: the shipped APS tooth)")
    p.add_argument("--out", required=True, help="output folder (runs/, real.json, results.md)")
    p.add_argument("--minutes", type=float, default=None, help="train.max_minutes (default: run's own)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a configuration override for every scan, or STEM:KEY=VALUE for one scan")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks real``."""
    run_real_benchmark(args.out, args.scans, minutes=args.minutes, overrides=args.set)
    return 0
