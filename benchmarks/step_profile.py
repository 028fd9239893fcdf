"""Where one training step's time goes: the batch (patches, augmentation, normalisation), the
forward pass, the backward pass, the gradient clipping and the optimiser step.

``python -m benchmarks profile --out DIR`` times each part of the production step
(:func:`tomodenoise.train.data.make_batch`, then the parts of
:func:`tomodenoise.train.step.train_step`) over ``repeats`` steps after a warm-up, on the
foam's splits, for every network of :func:`benchmarks.n2i.default_network_setups`,
and writes ``DIR/profile.json``.
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
from .n2i import default_network_setups

__all__ = ["PARTS", "add_arguments", "main", "profile_step", "run_profile"]

PARTS = ("batch", "forward", "backward", "clip", "optimizer")


def profile_step(splits: np.ndarray, model_name: str, params: dict[str, Any], *, patch: int = 128, batch: int = 8,
                 repeats: int = 10, warmup: int = 3, device: str = "auto", seed: int = 0) -> dict[str, float]:
    """Mean seconds of each of :data:`PARTS` over ``repeats`` steps (after ``warmup``)."""
    import torch
    import torch.nn.functional as F

    from tomodenoise.models import build_model
    from tomodenoise.train import N2IPairs, compute_normalisation, resolve_device
    from tomodenoise.train.data import make_batch

    dev = resolve_device(device)
    pairs = N2IPairs(splits, "X:1")
    norm = compute_normalisation(pairs)
    model = build_model(model_name, **params).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(seed)
    ny, nx = pairs.shape
    p = (min(patch, ny), min(patch, nx))
    times = {k: 0.0 for k in PARTS}

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for i in range(warmup + repeats):
        marks = [time.perf_counter()]
        items = [(int(rng.integers(pairs.splits.shape[1])), int(rng.integers(pairs.k))) for _ in range(batch)]
        x, t = make_batch(pairs, items, p, rng, True, norm)
        x, t = x.to(dev), t.to(dev)
        sync()
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), t)
        sync()
        marks.append(time.perf_counter())
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        sync()
        marks.append(time.perf_counter())
        opt.step()
        sync()
        marks.append(time.perf_counter())
        if i >= warmup:
            for k, a, b in zip(PARTS, marks, marks[1:]):
                times[k] += b - a
    return {k: v / repeats for k, v in times.items()}


def run_profile(out: Path | str, n_slices: int = 16, *, repeats: int = 10, device: str = "auto", phantom: str | None = None,
                **foam: Any) -> dict[str, Any]:
    """Profile one step of every default network on the foam; writes ``out/profile.json``."""
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_foam(out, n_slices, phantom=phantom, **foam)
    rows = {}
    for name, setup in default_network_setups().items():
        if setup.run_defaults:  # sized per scan by the recipe: the same network as n2i_msd here
            continue
        t = profile_step(data.splits, setup.model, setup.params, patch=setup.patch_size or 10**9,
                         batch=setup.batch_size, repeats=repeats, device=device)
        total = sum(t.values())
        rows[name] = {"model": setup.model, "params": setup.params, "batch": setup.batch_size,
                      "patch": setup.patch_size, "seconds": t, "total": total}
        log(f"{name}: {total * 1000:.0f} ms per step of {setup.batch_size} x {setup.patch_size}^2 patches: "
            + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in t.items()))
    mach = machine()
    record = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": mach,
              "command": f"python -m benchmarks profile --slices {n_slices} --out {out}", "repeats": repeats,
              "networks": rows}
    (out / "profile.json").write_text(json.dumps(record, indent=2, default=float))
    log(f"machine: {machine_line(mach)}; wrote {out / 'profile.json'}")
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks profile``."""
    p.add_argument("--out", required=True, help="output folder (also the caches)")
    p.add_argument("--slices", type=int, default=16, help="central slices of the foam (default %(default)s)")
    p.add_argument("--phantom", help="phantom.h5 (default: ../shared/data/foam_n2i/phantom.h5 if present, "
                                     "else a generated foam)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks profile``."""
    run_profile(args.out, args.slices, phantom=args.phantom)
    return 0
