"""Warm start: how much of a cold start's training a model of another scan of the same kind saves.

``python -m benchmarks warmstart --slices N --out DIR --minutes M`` runs, in one go:

1. a *source* scan: a foam generated with another seed (same size distribution as the
   reference foam: 100 000 spheres, largest radius 0.2), simulated and reconstructed like the
   target, and N2I trained on it for ``--source-minutes``;
2. the *target* (the reference foam): a cold start for ``M`` minutes;
3. the target again, warm-started from the source's ``best.pt`` (``train.init_from``) for
   ``M / 5`` minutes (``--warm-minutes``).

It reports the training seconds and steps the warm start needs to reach the cold start's
final PSNR (curve slices) and its best held-out N2I loss, as fractions of the cold start's.
``DIR/warmstart.json`` and ``DIR/warmstart.png`` hold the record and the curves.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import log, machine, machine_line, prepare_foam
from .n2i import NetworkSetup, default_network_setups, time_to_reach, train_network
from .plots import write_curves

__all__ = ["WARM_TARGET", "add_arguments", "main", "run_warmstart_benchmark"]

#: The warm start should reach the cold start's quality in at most this fraction of its time.
WARM_TARGET = 0.2
SOURCE_SPHERES = 100_000


def _steps_at(points: list[dict[str, Any]], seconds: float | None, key: str = "seconds") -> int | None:
    if seconds is None:
        return None
    return next((int(p["step"]) for p in points if float(p[key]) >= seconds), None)


def run_warmstart_benchmark(out: Path | str, n_slices: int = 16, minutes: float = 5.0, *,
                            source_minutes: float | None = None, warm_minutes: float | None = None,
                            source_seed: int = 1, network: str = "n2i_msd", phantom: str | None = None,
                            seed: int = 0, device: str = "auto", progress: bool = True,
                            setup: NetworkSetup | None = None, source_spheres: int = SOURCE_SPHERES,
                            **foam: Any) -> dict[str, Any]:
    """Cold start vs warm start from another foam; writes ``out/warmstart.json`` and ``.png``."""
    t_start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    setup = setup or default_network_setups()[network]
    source_minutes = minutes if source_minutes is None else source_minutes
    warm_minutes = minutes * WARM_TARGET if warm_minutes is None else warm_minutes
    if source_seed == seed and phantom == "generate":
        raise ValueError("the source foam must differ from the target: use another --source-seed")

    src_dir = out / "source"
    src_dir.mkdir(exist_ok=True)
    source = prepare_foam(src_dir, n_slices, phantom="generate", seed=source_seed,
                          **{**foam, "n_spheres": source_spheres})
    _, src = train_network(f"{network}_source", setup, source, source_minutes, src_dir, seed=seed, progress=progress,
                           device=device)
    target = prepare_foam(out, n_slices, phantom=phantom, seed=seed, **foam)
    _, cold = train_network(f"{network}_cold", setup, target, minutes, out, seed=seed, progress=progress,
                            device=device)
    dense = tuple(float(s) for s in np.arange(5.0, warm_minutes * 60 + 60, 5.0))  # a point after every epoch
    _, warm = train_network(f"{network}_warm", setup, target, warm_minutes, out, seed=seed, progress=progress,
                            device=device, init_from=src["checkpoint"], curve_seconds=dense)

    cold_final = cold["curve"][-1]["psnr"]
    cold_best_val = cold["best_val_loss"]
    t_cold_psnr = time_to_reach(cold["curve"], cold_final)
    t_cold_val = time_to_reach(cold["history"], cold_best_val, "val_loss", "elapsed_s")
    t_warm_psnr = time_to_reach(warm["curve"], cold_final)
    t_warm_val = time_to_reach(warm["history"], cold_best_val, "val_loss", "elapsed_s")

    def frac(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    mach = machine()
    command = (f"python -m benchmarks warmstart --slices {n_slices} --out {out} --network {network} --minutes {minutes:g}"
               f" --source-minutes {source_minutes:g} --warm-minutes {warm_minutes:g}")
    record = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": mach, "command": command,
        "network": network, "n_slices": n_slices, "source": {"phantom": source.phantom, "seed": source_seed,
                                                            "minutes": source_minutes, "best_val_loss": src["best_val_loss"],
                                                            "checkpoint": src["checkpoint"]},
        "target": target.phantom,
        "cold": {k: v for k, v in cold.items() if k != "history"}, "warm": {k: v for k, v in warm.items() if k != "history"},
        "cold_history": cold["history"], "warm_history": warm["history"],
        "cold_final_psnr": cold_final, "cold_best_val_loss": cold_best_val,
        "psnr": {"cold_seconds": t_cold_psnr, "warm_seconds": t_warm_psnr, "fraction": frac(t_warm_psnr, t_cold_psnr),
                 "cold_steps": _steps_at(cold["curve"], t_cold_psnr), "warm_steps": _steps_at(warm["curve"], t_warm_psnr)},
        "val_loss": {"cold_seconds": t_cold_val, "warm_seconds": t_warm_val, "fraction": frac(t_warm_val, t_cold_val),
                     "cold_steps": _steps_at(cold["history"], t_cold_val, "elapsed_s"),
                     "warm_steps": _steps_at(warm["history"], t_warm_val, "elapsed_s")},
        "target_fraction": WARM_TARGET, "total_seconds": time.perf_counter() - t_start,
    }
    (out / "warmstart.json").write_text(json.dumps(record, indent=2, default=float))
    write_curves(out / "warmstart.png", {"cold start": cold["curve"], "warm start (other foam)": warm["curve"]},
                 levels={"cold start, final": cold_final},
                 title=f"foam: warm start from a foam with seed {source_seed} ({machine_line(mach)})")
    for what, r in (("PSNR", record["psnr"]), ("held-out N2I loss", record["val_loss"])):
        f = r["fraction"]
        log(f"warm start: cold start's final {what} after {r['cold_seconds']} s ({r['cold_steps']} steps) cold, "
            f"{r['warm_seconds']} s ({r['warm_steps']} steps) warm"
            + (f": {f:.2f} of the cold time (target <= {WARM_TARGET:g})" if f is not None else ": not reached warm"))
    log(f"wrote {out / 'warmstart.json'}, {out / 'warmstart.png'}; reproduce: `{command}`")
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks warmstart``."""
    p.add_argument("--out", required=True, help="output folder (also the caches and checkpoints)")
    p.add_argument("--slices", type=int, default=16, help="central slices of the foam (default %(default)s)")
    p.add_argument("--minutes", type=float, default=5.0, help="the cold start's training minutes (default %(default)s)")
    p.add_argument("--source-minutes", type=float, default=None,
                   help="training on the other foam (default: --minutes)")
    p.add_argument("--warm-minutes", type=float, default=None,
                   help=f"the warm start's budget (default: {WARM_TARGET:g} x --minutes)")
    p.add_argument("--network", default="n2i_msd", choices=["n2i_unet", "n2i_msd"],
                   help="which network (default %(default)s, the faster to quality)")
    p.add_argument("--phantom", help="the target's phantom.h5 (default: ../shared/data/foam_n2i/phantom.h5 if "
                                     "present, else a generated foam)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks warmstart``."""
    run_warmstart_benchmark(args.out, args.slices, args.minutes, source_minutes=args.source_minutes,
                            warm_minutes=args.warm_minutes, network=args.network, phantom=args.phantom)
    return 0
