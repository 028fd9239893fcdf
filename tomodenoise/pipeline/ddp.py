"""One DDP rank of the train stage: what every rank runs, started by
:func:`tomodenoise.pipeline.training.train_ranks` with torch's launcher, or by hand under
``torchrun`` / ``srun torchrun`` on a cluster (``deploy/slurm/train.sbatch``, with ``--stage``):
``python -m tomodenoise.pipeline.ddp``.

Every rank reads the split reconstructions from the store into its own memory once, joins
the process group (NCCL on GPUs, gloo on CPUs; collectives time out after
``train.rank_timeout`` s), trains its share of every epoch's items
(:func:`tomodenoise.train.train_n2i`: the distributed sampler, gradient all-reduce, rank 0
alone writes ``best.pt`` / ``last.pt``, temporary name then rename) and writes its progress to
``model/ranks/rank-<r>.json``. Resume after a crash is the single-process one: the stage is
run again and continues from ``model/last.pt``.

This module uses :mod:`tomodenoise.pipeline.training`; that module names this one only as the
launcher's ``-m`` argument (:data:`~tomodenoise.pipeline.training.RANK_ENTRY`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import RunConfig
from ..io.store import ScanStore
from .training import progress_dir, record_training, stage_record, start_training, training_data

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """One DDP rank of the train stage (the environment comes from torch's launcher)."""
    import torch

    from ..train import train_n2i
    from ..train.distributed import dist_info
    from ..train.launch import init_rank_group, write_rank_progress

    p = argparse.ArgumentParser(prog="python -m tomodenoise.pipeline.ddp", description=main.__doc__)
    p.add_argument("--store", required=True, help="the scan's store folder (<output.root>/<scan_id>)")
    p.add_argument("--config", required=True, help="the run configuration YAML")
    p.add_argument("--stage", action="store_true",
                   help="do the train stage's bookkeeping as well (resume an interrupted training with the same "
                        "settings, mark the stage done): for srun/torchrun started by hand")
    args = p.parse_args(argv)
    cfg = RunConfig.from_file(args.config)
    store = ScanStore(Path(args.store))
    init_rank_group(cfg.train.rank_timeout, cfg.train.device)
    rank, world = dist_info()
    folder = progress_dir(store)
    try:
        if args.stage:  # run by hand or by srun: this process group does the stage's bookkeeping too
            cfg = _start_stage(store, cfg, rank)
        write_rank_progress(folder, rank, epoch=0, epochs=cfg.train.epochs, world=world, status="reading")
        splits, shape, normalisation = training_data(store, cfg)

        def on_epoch(epoch: int, epochs: int, entry: dict) -> None:
            write_rank_progress(folder, rank, epoch=epoch, epochs=epochs, world=world, status="training",
                                entry=entry)

        write_rank_progress(folder, rank, epoch=0, epochs=cfg.train.epochs, world=world, status="training")
        t0 = time.perf_counter()
        res = train_n2i(splits, cfg.train, cfg.model, store.model_dir, run_config=cfg.model_dump(mode="json"),
                        on_epoch=on_epoch, volume_shape=shape, normalisation=normalisation)
        write_rank_progress(folder, rank, epoch=len(res.history) and res.history[-1]["epoch"],
                            epochs=cfg.train.epochs, world=world, status="done", stopped=res.stopped)
        if args.stage and rank == 0:
            record_training(store, cfg, stage_record(store), time.perf_counter() - t0, world)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def _start_stage(store: ScanStore, cfg: RunConfig, rank: int) -> RunConfig:
    """Rank 0 does :func:`~tomodenoise.pipeline.training.start_training`; every rank gets its
    answer (resume or not) before any rank reads the data."""
    import torch

    decision = [start_training(store, cfg).resume if rank == 0 else None]
    torch.distributed.broadcast_object_list(decision, src=0)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": decision[0]})})


if __name__ == "__main__":  # pragma: no cover - run by the launcher
    raise SystemExit(main())
