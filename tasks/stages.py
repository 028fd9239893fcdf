"""One Prefect task per pipeline stage, plus one per reconstruction chunk and one per denoise shard.

Each task is a thin call into :mod:`tomodenoise.pipeline`; the store root travels between
tasks as a string so that tasks run on any Dask worker that sees the same file system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tomodenoise import pipeline
from tomodenoise.config import RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.pipeline.reconstruction import ChunkGroup, plan_reconstruct, reconstruct_group


# Caching: Prefect's own result cache is off (NO_CACHE). What is skipped on a rerun is decided by
# the store: every stage and every reconstruction chunk records a key made of the input's
# identity (path, sizes, mtimes) and the settings it depends on (tomodenoise.pipeline.stage_keys),
# so a changed input or setting is never skipped, and deleting the store forgets everything.


def _passing_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only failures that may pass (I/O, a lost worker), never bad input or settings."""
    try:
        state.result()
    except (ValueError, TypeError, KeyError,  # ScanError, ValidationError, shape/geometry errors
            PermissionError, FileExistsError, FileNotFoundError):  # PathNotAllowed, scan-id clash, missing input
        return False
    except Exception:
        return True
    return False


@task(cache_policy=NO_CACHE, name="ingest", retries=1, retry_delay_seconds=5, retry_condition_fn=_passing_failure)
def ingest_task(cfg: RunConfig) -> str:
    return str(pipeline.ingest(cfg).root)


@task(cache_policy=NO_CACHE, name="plan-reconstruction")
def plan_reconstruct_task(store_root: str, cfg: RunConfig) -> list[ChunkGroup]:
    return plan_reconstruct(ScanStore(store_root), cfg)


@task(cache_policy=NO_CACHE, name="reconstruct-group", retries=2, retry_delay_seconds=2, retry_condition_fn=_passing_failure,
      task_run_name="{group.name}")
def reconstruct_group_task(store_root: str, cfg: RunConfig, group: ChunkGroup) -> ChunkGroup:
    """The chunks of one group (a retry redoes only those without a completion marker)."""
    return reconstruct_group(ScanStore(store_root), cfg, group)


@task(cache_policy=NO_CACHE, name="finish-reconstruction")
def finish_reconstruct_task(store_root: str, cfg: RunConfig, seconds: float) -> None:
    pipeline.finish_reconstruct(ScanStore(store_root), cfg, seconds)


@task(cache_policy=NO_CACHE, name="train")
def train_task(store_root: str, cfg: RunConfig) -> str:
    from tasks.artifacts import ChunkProgress

    progress: dict[str, ChunkProgress] = {}

    def on_epoch(epoch: int, epochs: int, entry: dict) -> None:
        # a progress artifact in the UI: the share of the time budget or of the planned steps, whichever
        # ends the training first (the planned epochs alone would show a few % and then jump to 100 %)
        if "bar" not in progress:  # DDP: one artifact for all ranks, following the slowest
            ranks = entry.get("ranks")
            what = "training: share of the budget or of the planned steps"
            progress["bar"] = ChunkProgress(1000, f"{what} ({ranks} DDP ranks)" if ranks else what)
        bar = progress["bar"]
        done = int(round(1000 * float(entry["share"]))) if "share" in entry else int(1000 * epoch / max(epochs, 1))
        bar.advance(max(0, done - bar.done))

    checkpoint = pipeline.train(ScanStore(store_root), cfg, on_epoch=on_epoch)
    if "bar" in progress:  # stopped early (no improvement, time limit): the stage is done
        progress["bar"].advance(progress["bar"].total - progress["bar"].done)
    return str(checkpoint)


@task(cache_policy=NO_CACHE, name="denoise")
def denoise_task(store_root: str, cfg: RunConfig, checkpoint: str | None = None) -> None:
    """The whole denoise stage in this task (the same shards as the flow, one after another)."""
    pipeline.denoise(ScanStore(store_root), cfg, Path(checkpoint) if checkpoint else None)


@task(cache_policy=NO_CACHE, name="plan-denoise")
def plan_denoise_task(store_root: str, cfg: RunConfig, checkpoint: str | None = None) -> list[pipeline.Shard]:
    return pipeline.prepare_denoise(ScanStore(store_root), cfg, checkpoint)


@task(cache_policy=NO_CACHE, name="denoise-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=_passing_failure,
      task_run_name="{shard.name}")
def denoise_shard_task(store_root: str, cfg: RunConfig, shard: pipeline.Shard,
                       checkpoint: str | None = None) -> pipeline.Shard:
    return pipeline.denoise_shard(ScanStore(store_root), cfg, shard, checkpoint)


@task(cache_policy=NO_CACHE, name="finish-denoise")
def finish_denoise_task(store_root: str, cfg: RunConfig, seconds: float) -> None:
    pipeline.finish_denoise(ScanStore(store_root), cfg, seconds)


@task(cache_policy=NO_CACHE, name="report")
def report_task(store_root: str, cfg: RunConfig, reference: str | None = None) -> dict[str, Any]:
    store = ScanStore(store_root)
    ref = np.load(reference) if reference else None
    metrics = pipeline.report(store, cfg, reference=ref)
    from tasks.artifacts import publish_report

    publish_report(store_root)  # report-<scan-id> (Markdown, previews embedded), store-<scan-id> (link)
    return metrics


def _artifact_key(name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    from tasks.artifacts import artifact_key

    return artifact_key("report", name)
