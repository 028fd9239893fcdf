"""The training benchmark: our loop against a reference-style loop on the same foam, in one run.

``python -m benchmarks reference --slices N --out DIR --minutes M`` trains the same network twice
for ``M`` minutes each:

- **ours**: :func:`tomodenoise.train.train_n2i` (splits in memory with their sum, random
  patches with the 8 dihedral augmentations, warm-up + cosine schedule over the time budget,
  gradient clipping, two neighbour slices per side as extra input channels), via
  :func:`benchmarks.n2i.train_network`;
- **reference-style**: what the reference implementation's training does, written here from
  its description: every item read from the store (Zarr, one chunk per split and slice) when
  the batch is made, whole slices, batch 8, Adam at a constant learning rate, no augmentation,
  no early stopping, no clipping, fp32, one input channel (the same architecture otherwise).

Both curves (PSNR of a few central slices against training seconds, the clock stopped
while scoring) go to ``DIR/reference.png``; ``DIR/reference.json`` holds them and the ratio
of the reference-style loop's seconds to its best PSNR over ours to the same PSNR.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import FoamData, log, machine, machine_line, prepare_foam
from .n2i import CURVE_SECONDS, NetworkSetup, PausableClock, default_network_setups, time_to_reach, train_network
from .plots import write_curves

__all__ = ["REFERENCE_BATCH", "add_arguments", "main", "reference_loop", "run_reference_benchmark"]

#: The reference-style loop's batch of whole slices and learning rate.
REFERENCE_BATCH = 8
REFERENCE_LR = 1e-3


class StoreItems:
    """(input, target) of one training item, read from the Zarr store each time (X:1)."""

    def __init__(self, store: Any, slices: np.ndarray, k: int, normalisation: dict[str, float]) -> None:
        self.store, self.slices, self.k, self.norm = store, slices, k, normalisation

    def __len__(self) -> int:
        return len(self.slices) * self.k

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch

        z, j = int(self.slices[i // self.k]), i % self.k
        stack = np.asarray(self.store[:, z], dtype=np.float32)  # all K splits of slice z, from disk
        target = stack[j]
        inp = (stack.sum(axis=0) - target) / (self.k - 1)
        m, s = self.norm["mean"], self.norm["std"]
        return torch.from_numpy((inp - m) / s)[None], torch.from_numpy((target - m) / s)[None]


def reference_loop(data: FoamData, setup: NetworkSetup, minutes: float, out: Path, *, seed: int = 0,
                   device: str = "auto", curve_slices: int = 4) -> dict[str, Any]:
    """Train ``setup``'s network the reference's way for ``minutes``; returns its curve and counts."""
    import torch
    import zarr
    from torch.utils.data import DataLoader

    from tomodenoise.denoise import denoise
    from tomodenoise.models import build_model
    from tomodenoise.train import N2IPairs, compute_normalisation, resolve_device, split_slices
    from tomodenoise.train.step import train_step
    from .n2i import val_fraction_for

    dev = resolve_device(device)
    k, n_z, ny, nx = data.splits.shape
    path = out / "reference_store.zarr"
    store = zarr.open_array(str(path), mode="w", shape=data.splits.shape, chunks=(1, 1, ny, nx), dtype="f4")
    store[:] = data.splits
    train_idx, _ = split_slices(n_z, val_fraction_for(n_z))
    norm = compute_normalisation(N2IPairs(data.splits, "X:1", train_idx))
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(StoreItems(zarr.open_array(str(path), mode="r"), train_idx, k, norm),
                        batch_size=REFERENCE_BATCH, shuffle=True, generator=gen, num_workers=0)
    torch.manual_seed(seed)
    model = build_model(setup.model, **setup.params).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=REFERENCE_LR)
    idx = data.central(curve_slices)
    sub = data.splits[:, idx]
    clock = PausableClock()
    start = clock()
    pending = list(CURVE_SECONDS)
    curve: list[dict[str, Any]] = []
    steps, epoch, stop = 0, 0, False

    def point(t: float) -> None:
        with clock.paused():
            model.eval()
            img = denoise(model, sub, strategy="X:1", normalisation=norm, batch_size=4, device=dev)
            model.train()
            curve.append({"seconds": t, "step": steps, "epoch": epoch, "psnr": data.scorer.psnr(img, idx)})

    log(f"reference-style loop: {setup.model} {setup.params} for {minutes:g} min (whole slices from {path.name}, "
        f"batch {REFERENCE_BATCH}, constant lr {REFERENCE_LR:g}, no augmentation)")
    model.train()
    while not stop:
        epoch += 1
        for x, t in loader:
            if clock() - start >= minutes * 60:
                stop = True
                break
            train_step(model, opt, x.to(dev), t.to(dev), REFERENCE_LR, None)
            steps += 1
            now = clock() - start
            if pending and now >= pending[0]:
                while pending and now >= pending[0]:
                    pending.pop(0)
                if not pending:
                    pending.append(now + 300.0)
                point(now)
    point(clock() - start)
    return {"model": setup.model, "params": setup.params, "batch_size": REFERENCE_BATCH, "lr": REFERENCE_LR,
            "patch_size": None, "schedule": "constant", "augment": False, "store": str(path), "steps": steps,
            "epochs": epoch, "training_seconds": curve[-1]["seconds"], "curve": curve,
            "curve_slices": [int(data.rows[i]) for i in idx]}


def run_reference_benchmark(out: Path | str, n_slices: int = 16, minutes: float = 10.0, *, network: str = "n2i_msd",
                            phantom: str | None = None, seed: int = 0, device: str = "auto", progress: bool = True,
                            setup: NetworkSetup | None = None, **foam: Any) -> dict[str, Any]:
    """Ours and the reference-style loop on the same foam for ``minutes`` each; writes
    ``out/reference.json`` and ``out/reference.png`` and returns the record."""
    t_start = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    setup = setup or default_network_setups()[network]
    data = prepare_foam(out, n_slices, phantom=phantom, seed=seed, **foam)
    _, ours = train_network(f"{network}_ours", setup, data, minutes, out, seed=seed, progress=progress, device=device)
    ref = reference_loop(data, setup, minutes, out, seed=seed, device=device)
    ref_best = max(p["psnr"] for p in ref["curve"])
    t_ref = time_to_reach(ref["curve"], ref_best)
    t_ours = time_to_reach(ours["curve"], ref_best)
    ratio = (t_ref / t_ours) if (t_ref and t_ours) else None
    mach = machine()
    command = f"python -m benchmarks reference --slices {n_slices} --out {out} --network {network} --minutes {minutes:g}"
    record = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": mach, "command": command,
        "network": network, "minutes": minutes, "n_slices": n_slices,
        "ours": {k: v for k, v in ours.items() if k != "history"}, "reference": ref,
        "reference_best_psnr": ref_best, "reference_seconds_to_best": t_ref,
        "ours_seconds_to_reference_best": t_ours, "speedup": ratio,
        "ours_final_psnr": ours["curve"][-1]["psnr"], "total_seconds": time.perf_counter() - t_start,
    }
    (out / "reference.json").write_text(json.dumps(record, indent=2, default=float))
    write_curves(out / "reference.png", {f"ours ({network})": ours["curve"], "reference-style loop": ref["curve"]},
                 levels={"reference-style best": ref_best},
                 title=f"foam: ours vs the reference-style loop, same network ({machine_line(mach)})")
    speed = f"{ratio:.1f}x sooner" if ratio else "not reached by ours" if t_ours is None else "n/a"
    log(f"reference-style loop: best {ref_best:.2f} dB after {t_ref:.0f} s of {ref['training_seconds']:.0f} "
        f"({ref['steps']} steps); ours: {t_ours if t_ours is None else round(t_ours)} s to the same PSNR, "
        f"{record['ours_final_psnr']:.2f} dB at the end ({ours['steps']} steps): {speed}")
    log(f"wrote {out / 'reference.json'}, {out / 'reference.png'}; reproduce: `{command}`")
    return record


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks reference``."""
    p.add_argument("--out", required=True, help="output folder (also the caches and checkpoints)")
    p.add_argument("--slices", type=int, default=16, help="central slices of the foam (default %(default)s)")
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes of each loop (default %(default)s)")
    p.add_argument("--network", default="n2i_msd", choices=["n2i_unet", "n2i_msd"],
                   help="which network (default %(default)s, the faster to quality)")
    p.add_argument("--phantom", help="phantom.h5 (default: ../shared/data/foam_n2i/phantom.h5 if present, "
                                     "else a generated foam)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks reference``."""
    run_reference_benchmark(args.out, args.slices, args.minutes, network=args.network, phantom=args.phantom)
    return 0
