"""The train stage as ``n`` DDP ranks: :func:`train_ranks` in the stage's process starts them with
torch's launcher; :func:`main` is what every rank runs (``python -m tomodenoise.pipeline.ddp``,
also under ``torchrun`` or ``srun torchrun`` on a cluster: ``deploy/slurm/train.sbatch``).

Every rank reads the split reconstructions from the store into its own memory once, joins
the process group (NCCL on GPUs, gloo on CPUs; collectives time out after
``train.rank_timeout`` s), trains its share of every epoch's items
(:func:`tomodenoise.train.train_n2i`: the distributed sampler, gradient all-reduce, rank 0
alone writes ``best.pt`` / ``last.pt``, temporary name then rename) and writes its progress to
``model/ranks/rank-<r>.json``. Resume after a crash is the single-process one: the stage is
run again and continues from ``model/last.pt``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..io.store import ScanStore

__all__ = ["main", "progress_dir", "stage_record", "train_ranks"]

log = logging.getLogger(__name__)


def progress_dir(store: ScanStore) -> Path:
    """Where the ranks write their progress (and their logs, under ``logs/``)."""
    return store.model_dir / "ranks"


def train_ranks(store: ScanStore, cfg: RunConfig, ranks: int, backend: str,
                on_epoch: Callable[[int, int, dict], None] | None = None) -> dict[str, Any]:
    """Train with ``ranks`` DDP processes; returns the stage record (checkpoint, epochs, ...).

    ``cfg.train`` is used as given (its ``resume`` included); ``on_epoch(epoch, epochs, entry)``
    follows the slowest rank. Raises :class:`~tomodenoise.train.launch.RankFailure` when a rank
    dies; ``last.pt`` keeps the last complete epoch, so running the stage again resumes.
    """
    import shutil

    from tqdm.auto import tqdm

    from ..logs import bars_wanted, summary
    from ..train.launch import launch_ranks

    folder = progress_dir(store)
    shutil.rmtree(folder, ignore_errors=True)  # progress of an earlier launch means nothing now
    folder.mkdir(parents=True)
    run_yaml = cfg.save(folder / "run.yaml")
    summary(log, f"training   {ranks} DDP ranks ({backend}); their logs: {folder / 'logs'}")
    seen = {"epoch": 0}
    epochs = cfg.train.epochs if isinstance(cfg.train.epochs, int) else None  # auto: the ranks resolve it
    bar = tqdm(total=epochs, desc=f"N2I training, {ranks} ranks", unit="epoch", dynamic_ncols=True,
               disable=not (cfg.train.progress and bars_wanted()))

    def follow(progress: dict[int, dict[str, Any]]) -> None:
        if len(progress) < ranks:
            return
        epoch = min(int(p.get("epoch", 0)) for p in progress.values())  # the slowest rank
        if epoch > seen["epoch"]:
            bar.update(epoch - seen["epoch"])
            seen["epoch"] = epoch
            entry = dict(progress[0].get("entry") or {}, ranks=ranks)
            bar.set_postfix_str(f"train {entry.get('train_loss', float('nan')):.4g}", refresh=False)
            if on_epoch is not None:
                total = progress[0].get("epochs", epochs)
                if isinstance(total, int) and bar.total != total:
                    bar.total = total
                on_epoch(epoch, total if isinstance(total, int) else 0, entry)

    try:
        launch_ranks(["-m", "tomodenoise.pipeline.ddp", "--store", str(store.root), "--config", str(run_yaml)],
                     ranks, log_dir=folder / "logs", progress_dir=folder, on_progress=follow)
    finally:
        bar.close()
    record = stage_record(store)
    if (record.get("budget") or {}).get("warning"):  # said in the ranks' logs only: say it here too
        log.warning("%s", record["budget"]["warning"])
    return record


def stage_record(store: ScanStore) -> dict[str, Any]:
    """The train stage's record from what rank 0 wrote: ``last.pt`` (history, best epoch)."""
    from ..train.checkpoint import load_raw

    raw = load_raw(store.model_dir / "last.pt")
    budget = store.model_dir / "budget.json"
    return dict(checkpoint=str(store.model_dir / "best.pt"), epochs=len(raw.get("history", [])),
                best_epoch=int(raw["best_epoch"]), stopped=(raw.get("metrics") or {}).get("stopped") or "epochs",
                best_val_loss=raw.get("best_val_loss"),
                budget=json.loads(budget.read_text()) if budget.exists() else None)


def main(argv: list[str] | None = None) -> int:
    """One DDP rank of the train stage (the environment comes from torch's launcher)."""
    import torch

    from ..train import train_n2i
    from ..train.distributed import dist_info
    from ..train.launch import init_rank_group, write_rank_progress
    from .training import record_training, training_data

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

    from .training import start_training

    decision = [start_training(store, cfg).resume if rank == 0 else None]
    torch.distributed.broadcast_object_list(decision, src=0)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": decision[0]})})


if __name__ == "__main__":  # pragma: no cover - run by the launcher
    raise SystemExit(main())
