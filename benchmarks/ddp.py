"""DDP training throughput: 1 process vs ``n`` gloo (CPU) or NCCL (GPU) ranks, in one run.

Both variants train the same network on the same split reconstructions with the same
effective batch (1 process with batch ``n * b``; ``n`` ranks with batch ``b`` each) for the
same epochs; the figure is optimiser steps per second over the epochs' own seconds after
the first (a warm-up) (the ranks' start-up is reported apart). On a CPU the ranks share the
machine's cores (each rank gets ``cores / n`` threads), so the ratio says how well DDP's
gradient all-reduce and the per-rank data pipeline overlap, not a gain in compute.

    python -m benchmarks ddp --out bench-output/ddp [--ranks 2 --size 128 --slices 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "format_report", "main", "run_ddp_benchmark"]


def _data(size: int, slices: int, k: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.stack([np.sin(8 * xx + i) * np.cos(6 * yy) for i in range(slices)]).astype(np.float32)
    return clean[None] + 0.3 * rng.standard_normal((k, slices, size, size)).astype(np.float32)


def run_ddp_benchmark(out: str | os.PathLike, *, ranks: int = 2, size: int = 128, slices: int = 16,
                      batch: int = 2, epochs: int = 3, patch: int = 64, device: str = "cpu",
                      model: str = "msd", params: dict | None = None) -> dict:
    """Time both variants; writes ``ddp.json`` under ``out`` and returns the figures."""
    import torch

    from tomodenoise.config import ModelConfig, RunConfig
    from tomodenoise.train import train_n2i
    from tomodenoise.train.checkpoint import load_raw
    from tomodenoise.train.launch import launch_ranks

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = _data(size, slices)
    np.save(out / "splits.npy", splits)
    cfg = RunConfig()
    cfg.model = ModelConfig(name=model, params=params or {})
    for key, value in dict(epochs=epochs, patch_size=patch, patches_per_slice=2, val_slices=[slices - 1],
                           device=device, progress=False, early_stopping=0, max_minutes=60.0).items():
        setattr(cfg.train, key, value)

    def rate(history: list[dict]) -> tuple[float, float, int]:
        timed = history[1:] or history  # the first epoch warms up (threads, allocator): not timed
        seconds = sum(h["seconds"] for h in timed)
        steps = int(timed[-1]["step"]) - (int(history[0]["step"]) if len(history) > 1 else 0)
        return steps / seconds, seconds, steps

    one = cfg.model_copy(deep=True)
    one.train.batch_size = ranks * batch
    t0 = time.perf_counter()
    res = train_n2i(splits, one.train, one.model, out / "one")
    wall_one = time.perf_counter() - t0
    r1, s1, n1 = rate(res.history)
    threads = torch.get_num_threads()
    if device == "cpu" and threads > 1:  # the same process on one core: what each rank has
        torch.set_num_threads(1)
        try:
            r1t, s1t, _ = rate(train_n2i(splits, one.train, one.model, out / "one-thread").history)
        finally:
            torch.set_num_threads(threads)
    else:
        r1t = s1t = None

    many = cfg.model_copy(deep=True)
    many.train.batch_size = batch
    many.save(out / "ranks.yaml")
    t0 = time.perf_counter()
    launch_ranks(["-m", "tomodenoise.train", "--recon", str(out / "splits.npy"), "--config", str(out / "ranks.yaml"),
                  "--out", str(out / "ranks")], ranks, log_dir=out / "logs")
    wall_many = time.perf_counter() - t0
    hist = load_raw(out / "ranks" / "last.pt")["history"]
    r2, s2, n2 = rate(hist)
    figures = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
                   + (f", {torch.cuda.get_device_name()}" if device != "cpu" and torch.cuda.is_available() else ""),
        "data": [int(v) for v in splits.shape], "network": model, "epochs": epochs, "effective_batch": ranks * batch,
        "one_process": {"steps": n1, "train_s": round(s1, 2), "wall_s": round(wall_one, 2), "steps_per_s": round(r1, 3),
                        "threads": threads},
        "one_process_one_thread": None if r1t is None else {"train_s": round(s1t, 2), "steps_per_s": round(r1t, 3)},
        f"{ranks}_ranks": {"steps": n2, "train_s": round(s2, 2), "wall_s": round(wall_many, 2),
                           "steps_per_s": round(r2, 3)},
        "ratio_steps_per_s": round(r2 / r1, 3),
        "final_train_loss": {"one_process": res.history[-1]["train_loss"], f"{ranks}_ranks": hist[-1]["train_loss"]},
        "command": f"python -m benchmarks ddp --out {out} --ranks {ranks} --size {size} --slices {slices} "
                   f"--batch {batch} --epochs {epochs} --device {device}",
    }
    (out / "ddp.json").write_text(json.dumps(figures, indent=2))
    return figures


def format_report(f: dict, ranks: int) -> str:
    """The figures of :func:`run_ddp_benchmark` as printed lines."""
    one, many = f["one_process"], f[f"{ranks}_ranks"]
    lines = [f"DDP training on {f['machine']}: data {f['data']}, {f['network']}, "
             f"effective batch {f['effective_batch']}",
             f"  1 process : {one['steps']} steps in {one['train_s']} s = {one['steps_per_s']} steps/s "
             f"(wall {one['wall_s']} s)"]
    if f["one_process_one_thread"]:
        lines.append(f"  1 process, 1 thread: {f['one_process_one_thread']['steps_per_s']} steps/s "
                     f"(the 1 process above had {one['threads']} threads)")
    lines += [f"  {ranks} ranks   : {many['steps']} steps in {many['train_s']} s = {many['steps_per_s']} steps/s "
              f"(wall {many['wall_s']} s, start-up included)",
              f"  ratio {ranks} ranks / 1 process: {f['ratio_steps_per_s']}x steps/s",
              f"  command: {f['command']}"]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks ddp``."""
    p.add_argument("--out", default="bench-output/ddp", help="working folder (default %(default)s)")
    p.add_argument("--ranks", type=int, default=2, help="DDP ranks (default %(default)s)")
    p.add_argument("--size", type=int, default=128, help="slice size (default %(default)s)")
    p.add_argument("--slices", type=int, default=16, help="slices (default %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="per rank; 1 process gets ranks x batch (default %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="the first is a warm-up, not timed (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL) (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    """``python -m benchmarks ddp``."""
    f = run_ddp_benchmark(args.out, ranks=args.ranks, size=args.size, slices=args.slices, batch=args.batch,
                          epochs=args.epochs, device=args.device)
    print(format_report(f, args.ranks))
    return 0
