"""The Prefect pieces around the core's stages: the task that runs one unit of work, the train
stage's progress in the UI, and the flow hooks (a stopped run is cancelled, not crashed; a run
may not bring its own roots).

What is skipped on a rerun is decided by the store, not by Prefect's result cache (off:
``NO_CACHE``): every stage and every chunk records a key made of the input's identity and the
settings it depends on (:func:`tomodenoise.pipeline.stage_keys`), so a changed input or setting
is never skipped, and deleting the store forgets everything.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import ChunkProgress, run_logger
from tomodenoise.config import RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.paths import PathNotAllowed
from tomodenoise.pipeline import Context, stage_named
from tomodenoise.watch import STOPPED_BY_SIGTERM

__all__ = ["TrainProgress", "cancel_if_terminated", "passing_failure", "refuse_root_overrides", "run_unit"]


def passing_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only failures that may pass (I/O, a lost worker), never bad input or settings."""
    try:
        state.result()
    except (ValueError, TypeError, KeyError,  # ScanError, ValidationError, shape/geometry errors
            PermissionError, FileExistsError, FileNotFoundError):  # PathNotAllowed, scan-id clash, missing input
        return False
    except Exception:
        return True
    return False


@task(cache_policy=NO_CACHE, name="unit", retry_delay_seconds=2, retry_condition_fn=passing_failure)
def run_unit(stage: str, store_root: str, cfg: RunConfig, unit: Any, ctx: Context) -> int:
    """One unit of a chunked stage, on any worker that sees the store (a retry redoes only the
    chunks without a completion marker); returns the chunks it wrote."""
    return stage_named(stage).run(ScanStore(store_root), cfg, unit, ctx)


class TrainProgress:
    """The train stage's ``on_epoch``: a progress artifact in the UI showing the share of the time
    budget or of the planned steps, whichever ends the training first (the planned epochs alone
    would show a few % and then jump to 100 %). Under DDP one artifact follows the slowest rank."""

    def __init__(self) -> None:
        self.bar: ChunkProgress | None = None

    def __call__(self, epoch: int, epochs: int, entry: dict) -> None:
        if self.bar is None:
            ranks = entry.get("ranks")
            what = "training: share of the budget or of the planned steps"
            self.bar = ChunkProgress(1000, f"{what} ({ranks} DDP ranks)" if ranks else what)
        done = int(round(1000 * float(entry["share"]))) if "share" in entry else int(1000 * epoch / max(epochs, 1))
        self.bar.advance(max(0, done - self.bar.done))

    def close(self) -> None:
        """Stopped early (no improvement, time limit): the stage is done."""
        if self.bar is not None:
            self.bar.advance(self.bar.total - self.bar.done)


def cancel_if_terminated(flow: Any, flow_run: Any, state: Any) -> None:
    """A run stopped by SIGTERM (SLURM's time limit or ``scancel``, ``timeout``, a shutdown) or
    Ctrl-C was cancelled, not crashed: say so in the UI. Its checkpoint and chunks are kept."""
    why = state.message or ""
    if "termination signal" in why:
        message = f"{STOPPED_BY_SIGTERM}; run it again to resume"
    elif "interrupt signal" in why:  # Ctrl-C: a person stopped it
        message = "stopped by an interrupt (Ctrl-C); run it again to resume"
    else:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run.id, Cancelled(message=message), force=True)
    except Exception as exc:  # the server may be going away too
        run_logger(__name__).warning("could not mark the run cancelled: %s", exc)


def refuse_root_overrides() -> None:
    """A run may not bring its own ``TOMODENOISE_*`` environment (its job variables).

    The roots come from the deployment and the worker; a caller of ``create_flow_run`` can add
    per-run ``job_variables``, which the process worker would put in the run's environment.
    """
    from prefect.runtime import flow_run

    jv = flow_run.job_variables or {}
    env = jv.get("env") if isinstance(jv, dict) else None
    bad = sorted(k for k in (env or {}) if str(k).upper().startswith("TOMODENOISE_"))
    if bad:
        raise PathNotAllowed(f"this run's job variables set {', '.join(bad)}: roots are set by the deployment only")
