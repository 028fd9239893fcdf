"""Training without a store: ``python -m tomodenoise.train`` (or ``torchrun -m
tomodenoise.train``) trains on a ``.npy`` of split reconstructions with a run YAML, in one
process or on every rank of the group that ``torchrun`` starts (the DDP tests and
``benchmarks/ddp.py`` use it). The train stage's ranks run :mod:`tomodenoise.pipeline.ddp`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from tomodenoise.train.distributed import dist_info
from tomodenoise.train.launch import init_rank_group
from tomodenoise.train.loop import train_n2i
from tomodenoise.train.progress import format_loss


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun -m tomodenoise.train`` (or plain ``python -m``).

    ``--recon`` is a ``.npy`` file of split reconstructions ``(split, z, y, x)`` (memory-mapped);
    ``--config`` a run YAML (its ``model`` and ``train`` sections are used). Initialises the
    process group from the ``torchrun`` environment (NCCL on GPUs, gloo on CPUs).
    """
    import argparse

    from tomodenoise.config import RunConfig

    p = argparse.ArgumentParser(prog="python -m tomodenoise.train", description=main.__doc__)
    p.add_argument("--recon", required=True, help=".npy file (split, z, y, x)")
    p.add_argument("--config", required=True, help="run configuration YAML")
    p.add_argument("--out", required=True, help="output folder for best.pt / last.pt")
    args = p.parse_args(argv)
    cfg = RunConfig.from_file(args.config)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        init_rank_group(cfg.train.rank_timeout, cfg.train.device)  # NCCL on GPUs, gloo on CPUs
    try:
        splits = np.load(args.recon, mmap_mode="r")
        res = train_n2i(splits, cfg.train, cfg.model, args.out, run_config=cfg.model_dump(mode="json"))
        if dist_info()[0] == 0:
            print(f"best checkpoint: {res.checkpoint} (epoch {res.best_epoch}, val loss {format_loss(res.best_val_loss)})")
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
