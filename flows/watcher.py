"""The new-scan watcher: started on a schedule, it starts one pipeline run per new scan.

Each scan is claimed atomically first (see :mod:`tomodenoise.watch`), and the run is created
with an idempotency key made from the scan's identity, so two overlapping watcher runs never
start the same scan twice. Scans whose output store already exists (runs started through the
REST API or the scan-completed event) are skipped too.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from tomodenoise.config import RunConfig
from tomodenoise.pipeline import input_identity, store_for
from tomodenoise.paths import PathNotAllowed, confine, input_roots
from tomodenoise.watch import DEFAULT_PATTERNS, claim, claims_dir_for, find_scans

PIPELINE_DEPLOYMENT = "tomodenoise-pipeline/pipeline"


def _already_processed(cfg: RunConfig, scan) -> bool:
    """True when the output store already holds this scan (started through the API or an event)."""
    c = cfg.model_copy(deep=True)
    c.input.path = str(scan)
    store = store_for(c)
    if not store.exists():
        return False
    try:
        held = store.attrs.get("source_identity", {})
    except Exception:  # a store being written: leave it to the next pass
        return True
    # the same file, unchanged since it was ingested (a rewritten scan is processed again)
    return held == input_identity(scan)


@flow(name="tomodenoise-watcher")
def watcher_flow(
    roots: list[str] | None = None,
    patterns: list[str] = list(DEFAULT_PATTERNS),
    min_age_s: float = 60.0,
    max_runs: int = 50,
    deployment: str = PIPELINE_DEPLOYMENT,
    overrides: dict[str, Any] | None = None,
    config: RunConfig | None = None,
) -> list[dict[str, str]]:
    """Find scans under ``roots`` not processed yet and start a ``deployment`` run for each.

    ``roots`` default to ``TOMODENOISE_INPUT_ROOTS`` and must lie inside them when that is set.
    Claims live under ``config.output.root``/.claims (the pipeline deployment's output root).
    Returns ``[{"scan": path, "flow_run_id": id}, ...]`` for the runs started.
    """
    logger = get_run_logger()
    allowed = input_roots()
    roots = roots or [str(r) for r in allowed]
    if not roots:
        raise ValueError("no input roots: pass `roots` or set TOMODENOISE_INPUT_ROOTS on the worker")
    roots = [str(confine(r, allowed)) for r in roots]
    cfg = config or RunConfig()
    claims = claims_dir_for(cfg.output.root)
    scans = find_scans(roots, patterns, min_age_s)
    started: list[dict[str, str]] = []
    for scan in scans:
        try:
            scan = confine(scan, allowed)  # a symlink under a root may point outside it
        except PathNotAllowed:
            logger.warning("skipping %s: it resolves outside the input roots", scan)
            continue
        if len(started) >= max_runs:
            logger.info("max_runs = %d reached; the rest waits for the next pass", max_runs)
            break
        if _already_processed(cfg, scan):
            continue
        c = claim(scan, claims)
        if c is None:
            continue
        try:
            run = run_deployment(
                deployment, parameters={"scan": str(scan), "overrides": overrides or {}},
                timeout=0, as_subflow=False, idempotency_key=f"tomodenoise-scan-{c.id}",
                flow_run_name=f"{scan.stem}-{c.id[:6]}", tags=["tomodenoise", "watcher"],
            )
        except Exception:
            c.release()
            raise
        c.record(flow_run_id=str(run.id), deployment=deployment)
        logger.info("started %s for %s", run.name, scan)
        started.append({"scan": str(scan), "flow_run_id": str(run.id)})
    logger.info("%d scans found under %s, %d new runs started", len(scans), ", ".join(roots), len(started))
    return started
