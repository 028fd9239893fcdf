"""``tomodenoise slurm train|pipeline|watch``: the command line of :mod:`.submit` (its parser
and what it runs), kept out of ``tomodenoise/cli.py``; the SLURM code is imported only when the
command runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..config import RunConfig

__all__ = ["add_slurm_parser", "command"]


def add_slurm_parser(sub: Any, common: argparse.ArgumentParser, build_config: Callable[[Any], RunConfig]) -> None:
    """``tomodenoise slurm train|pipeline|watch``."""
    sl = sub.add_parser("slurm", help="submit deploy/slurm's job scripts sized to the partition (sinfo, sbatch "
                        "--test-only first), watch the job until it runs").add_subparsers(dest="job", required=True)
    sized = argparse.ArgumentParser(add_help=False, parents=[common])
    sized.add_argument("-c", "--config", help="run configuration YAML (train: default the store's own)")
    for name, kind, what in (("--set", str, "KEY=VALUE: override a config value"), ("--partition", str, "default: "
                             "SLURM's"), ("--nodes", int, "default 1"), ("--cpus-per-task", int, "default: the node's"),
                             ("--mem", str, "default: the node's share"), ("--time", str, "default: the script's")):
        sized.add_argument(name, type=kind, help=what, **({"action": "append"} if name == "--set" else {}))
    for flag, what in (("--as-is", "keep the script's #SBATCH lines (no sizing)"), ("--dry-run", "check with "
                       "sbatch --test-only, submit nothing"), ("--wait", "follow the job to its end")):
        sized.add_argument(flag, action="store_true", help=what)
    sl.add_parser("train", parents=[sized], help="train.sbatch on a reconstructed store").add_argument("store")
    pl = sl.add_parser("pipeline", parents=[sized], help="pipeline.sbatch: a scan's whole pipeline in one allocation")
    pl.add_argument("scan")
    pl.add_argument("--out", required=True, help="output root; writes OUT/<scan_id>/")
    w = sl.add_parser("watch", parents=[common], help="follow a job; one line when it can never start")
    w.add_argument("job_id")
    w.add_argument("--wait", action="store_true", help="follow the job to its end")
    for name in ("train", "pipeline", "watch"):
        sl.choices[name].set_defaults(func=lambda args: command(args, build_config))


def command(args: Any, build_config: Callable[[Any], RunConfig]) -> int:
    """``tomodenoise slurm train|pipeline|watch`` (the parsed ``args``; ``build_config``: the
    CLI's, from ``-c``/``--set``/``SCAN``/``--out``). A SLURM refusal is one line, exit status 1."""
    from .jobs import SlurmError
    from .submit import submit_pipeline, submit_train, watch

    log = logging.getLogger("tomodenoise.cli")
    try:
        if args.job == "watch":
            watch(args.job_id, wait=args.wait, cancel=False)
            return 0
        size = dict(partition=args.partition, n_nodes=args.nodes or 1, cpus=args.cpus_per_task, mem=args.mem,
                    walltime=args.time, as_is=args.as_is, dry_run=args.dry_run)
        if args.job == "train":  # without -c: the store's own configuration, --set on top of it
            job_id, _ = submit_train(Path(args.store), build_config(args) if args.config else None,
                                     sets=[] if args.config else (args.set or []), **size)
        else:
            job_id, _ = submit_pipeline(build_config(args), **size)
        if job_id is not None:
            watch(job_id, wait=args.wait)
    except SlurmError as e:  # one sentence: SLURM's reason and the remedy
        log.error("%s", e, exc_info=True)
        return 1
    return 0
