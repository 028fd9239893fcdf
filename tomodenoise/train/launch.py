"""Start DDP training ranks with PyTorch's own launcher (``torch.distributed.launcher``, the API
behind ``torchrun``): ``n`` processes on this machine, c10d rendezvous on a free local port,
no restarts; each rank writes its progress to a small JSON file that the caller can poll.

A rank that dies (killed, out of memory, an exception) fails the whole launch at once:
torch elastic stops the other ranks and :func:`launch_ranks` raises :class:`RankFailure`
naming the rank, its exit code or signal and the end of its log. No rank waits forever on a
dead peer: collectives time out after ``train.rank_timeout`` seconds
(:func:`init_rank_group`).

On SLURM the same entry point runs under ``srun torchrun`` (``deploy/slurm/train.sbatch``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from tomodenoise.device import resolve_device

__all__ = ["RankFailure", "die_with_parent", "init_rank_group", "launch_ranks", "read_rank_progress", "resolve_ranks",
           "write_rank_progress"]

log = logging.getLogger(__name__)


class RankFailure(RuntimeError):
    """A training rank died; the message names it, how it ended and the end of its log."""


def resolve_ranks(ranks: int | str, device: str = "auto") -> tuple[int, str]:
    """``(number of ranks, backend)`` for ``train.ranks`` and ``train.device``.

    ``"auto"``: one rank per visible GPU (1 without a GPU). On GPUs the backend is NCCL and
    there may not be more ranks than GPUs; on CPUs it is gloo. A CUDA device without CUDA is a
    :class:`ValueError` (:func:`tomodenoise.device.resolve_device`).
    """
    use_cuda = resolve_device(device).type == "cuda"
    n_gpu = torch.cuda.device_count() if use_cuda else 0
    if ranks == "auto":
        return max(1, n_gpu), "nccl" if n_gpu else "gloo"
    n = int(ranks)
    if use_cuda and n > n_gpu:
        raise ValueError(f"train.ranks = {n} but {n_gpu} GPU(s) are visible: one rank per GPU "
                         "(set train.device: cpu for gloo ranks on CPU cores)")
    return n, "nccl" if use_cuda else "gloo"


def init_rank_group(timeout_s: float, device: str = "auto") -> str:
    """Join the process group ``torchrun`` described in the environment; returns the backend.

    NCCL with this rank's GPU (``LOCAL_RANK``) when GPUs are used, gloo otherwise; every
    collective fails after ``timeout_s`` seconds instead of waiting for a dead rank.
    """
    die_with_parent()
    use_cuda = resolve_device(device).type == "cuda"
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timeout aborts, not hangs
    else:  # share the cores: n ranks x 1/n of the threads
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return backend


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its launcher dies (a flow run killed with SIGKILL),
    so no orphaned rank goes on training and writing checkpoints beside a rerun."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the launcher is already gone
            os.kill(os.getpid(), signal.SIGTERM)
    except OSError:  # no libc by that name: nothing to arrange
        pass


# --- progress files ---------------------------------------------------------------------------
def write_rank_progress(folder: str | os.PathLike, rank: int, **entry: Any) -> None:
    """``folder/rank-<rank>.json``: this rank's pid and latest progress (atomically replaced)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".rank-{rank}.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"rank": rank, "pid": os.getpid(), "time": time.time(), **entry}))
    os.replace(tmp, folder / f"rank-{rank}.json")


def read_rank_progress(folder: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Every rank's latest progress in ``folder`` (missing or half-written files skipped)."""
    out: dict[int, dict[str, Any]] = {}
    for p in Path(folder).glob("rank-*.json"):
        try:
            d = json.loads(p.read_text())
            out[int(d["rank"])] = d
        except (OSError, ValueError, KeyError):
            continue
    return out


# --- the launch -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _describe(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def launch_ranks(
    args: Sequence[str],
    ranks: int,
    *,
    log_dir: str | os.PathLike,
    progress_dir: str | os.PathLike | None = None,
    on_progress: Callable[[dict[int, dict[str, Any]]], None] | None = None,
    poll_s: float = 1.0,
) -> None:
    """Run ``python <args>`` as ``ranks`` DDP processes on this machine and wait for them.

    Parameters
    ----------
    args
        The command line after ``python`` (e.g. ``["-m", "tomodenoise.pipeline.ddp", ...]``).
    ranks
        Number of processes (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` set by the launcher).
    log_dir
        Each rank's stdout and stderr go to files under it (the console stays quiet).
    progress_dir, on_progress
        ``on_progress(read_rank_progress(progress_dir))`` every ``poll_s`` seconds while the
        ranks run and once at the end (e.g. a progress artifact in the UI).

    Raises
    ------
    RankFailure
        When a rank fails; the others are stopped.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=ranks, run_id=uuid.uuid4().hex[:12],
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
        monitor_interval=0.5, start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=str(log_dir), redirects=Std.ALL),
    )
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            _report(progress_dir, on_progress)

    poller = threading.Thread(target=poll, daemon=True, name="rank-progress")
    if progress_dir is not None and on_progress is not None:
        poller.start()
    # the launcher's own lines (one per failed rank) stay off the console: RankFailure says it
    quiet = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
             if n.startswith("torch.distributed.elastic")] + [logging.getLogger("torch.distributed.elastic")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.CRITICAL)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        elastic_launch(config, sys.executable)(*args)
    except SignalException as exc:  # the launcher stopped the ranks: stop as this process would have
        _pass_on(int(exc.sigval), handlers)
        raise
    except ChildFailedError as exc:
        # the rank that failed first; the others were stopped by the launcher (SIGTERM)
        own = {r: f for r, f in exc.failures.items() if f.exitcode != -signal.SIGTERM} or exc.failures
        rank, failure = min(own.items(), key=lambda rf: (rf[1].timestamp, rf[0]))
        logs = sorted(log_dir.glob(f"{config.run_id}*/attempt_*/{failure.local_rank}/stderr.log"))
        tail = _tail(logs[-1]) if logs else ""
        raise RankFailure(
            f"training rank {rank} of {ranks} failed ({_describe(failure.exitcode)}); the other ranks were "
            f"stopped; run the stage again to resume from the last complete epoch. Its log: "
            f"{logs[-1] if logs else log_dir}" + (f"\n{tail}" if tail else " (empty)")
        ) from None
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(timeout=5)
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    _report(progress_dir, on_progress)


def _pass_on(signum: int, handlers: dict[int, Any]) -> None:
    """Give a signal that torch elastic caught (it raises ``SignalException``) to the handler
    this process had before the launch (the CLI's, Prefect's), or stop as Python would."""
    handler = handlers.get(signum)
    if threading.current_thread() is threading.main_thread():
        for sig, h in handlers.items():
            if h is not None:
                signal.signal(sig, h)
    if callable(handler):
        handler(signum, None)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signum == signal.SIGTERM and handler == signal.SIG_DFL:
        raise SystemExit(128 + signum)


def _report(progress_dir: str | os.PathLike | None, on_progress: Callable | None) -> None:
    if progress_dir is None or on_progress is None:
        return
    try:
        on_progress(read_rank_progress(progress_dir))
    except Exception as exc:  # progress is for people: never fatal
        log.warning("rank progress callback failed: %s", exc)
