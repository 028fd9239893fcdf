"""The new-scan watcher: started on a schedule, it starts one pipeline run per new scan.

Each scan is claimed atomically first (see :mod:`tomodenoise.watch`), and the run is created
with an idempotency key made from the scan's identity, so two overlapping watcher runs never
start the same scan twice. Scans whose output store already exists (runs started through the
REST API or the scan-completed event) are skipped too.

Each pass also follows the runs it started: a run that failed, crashed or no longer exists is
resubmitted up to ``max_retries`` times, ``retry_backoff_s`` after the first failure and twice
as long after each later one (one idempotency key per attempt,
``tomodenoise-scan-<id>-<attempt>``, so overlapping passes start each attempt once). When the
last attempt fails too the scan is marked failed with the run's state message as the reason,
a WARNING names it, and it is not retried again unless its file changes. Every pass publishes
the table artifact ``tomodenoise-watcher``: each claimed scan with its status (running,
completed, retrying at T, failed: reason) and its flow run ids.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client

from tasks.watching import follow_up, publish_status, submit_scan, under_roots
from tomodenoise.config import RunConfig
from tomodenoise.paths import PathNotAllowed, confine, input_roots
from tomodenoise.pipeline.keys import already_ingested
from tomodenoise.watch import DEFAULT_PATTERNS, claim, claims_dir_for, find_scans, list_claims

PIPELINE_DEPLOYMENT = "tomodenoise-pipeline/pipeline"


@flow(name="tomodenoise-watcher")
def watcher_flow(
    roots: list[str] | None = None,
    patterns: list[str] = list(DEFAULT_PATTERNS),
    min_age_s: float = 60.0,
    max_runs: int = 50,
    deployment: str = PIPELINE_DEPLOYMENT,
    overrides: dict[str, Any] | None = None,
    config: RunConfig | None = None,
    max_retries: int = 3,
    retry_backoff_s: float = 300.0,
) -> list[dict[str, Any]]:
    """Start a ``deployment`` run for each new scan under ``roots``; resubmit failed ones.

    Parameters
    ----------
    roots : list of str, optional
        Folders searched recursively; default ``TOMODENOISE_INPUT_ROOTS``, and they must lie
        inside those when it is set.
    patterns : list of str
        File name patterns of scans.
    min_age_s : float
        A file modified more recently than this is still being written: left for later.
    max_runs : int
        Runs started per pass at most (resubmissions included); the rest waits.
    deployment : str
        The pipeline deployment ``flow-name/deployment-name`` whose runs are started.
    overrides : dict, optional
        Configuration overrides passed to every run (resubmissions get the current ones).
    config : RunConfig, optional
        Its ``output.root`` (the pipeline deployment's) holds the claims, ``.claims/``.
    max_retries : int
        Resubmissions of a scan whose run failed, crashed or vanished (``max_retries + 1``
        attempts in all) before it is marked failed.
    retry_backoff_s : float
        Delay before the first resubmission, doubled for each later one. A resubmission
        happens on the first pass after it is due.

    Returns
    -------
    list of dict
        ``{"scan": path, "flow_run_id": id, "attempt": n}`` for each run started by this pass.
    """
    logger = get_run_logger()
    allowed = input_roots()
    roots = roots or [str(r) for r in allowed]
    if not roots:
        raise ValueError("no input roots: pass `roots` or set TOMODENOISE_INPUT_ROOTS on the worker")
    roots = [str(confine(r, allowed)) for r in roots]
    cfg = config or RunConfig()
    claims = claims_dir_for(cfg.output.root)
    started: list[dict[str, Any]] = []

    ours = [c for c in list_claims(claims) if under_roots(c.scan, roots)]
    with get_client(sync_client=True) as client:
        for c in ours:
            try:
                run = follow_up(c, client, deployment, overrides, max_retries, retry_backoff_s,
                                 len(started) < max_runs, logger)
            except (OSError, ValueError) as e:  # an unreadable claim must not stop the others
                logger.warning("could not follow up claim %s: %r", c.file, e)
                continue
            if run:
                started.append(run)
    resubmitted = len(started)

    scans = find_scans(roots, patterns, min_age_s)
    for scan in scans:
        try:
            scan = confine(scan, allowed)  # a symlink under a root may point outside it
        except PathNotAllowed:
            logger.warning("skipping %s: it resolves outside the input roots", scan)
            continue
        if len(started) >= max_runs:
            logger.info("max_runs = %d reached; the rest waits for the next pass", max_runs)
            break
        if already_ingested(cfg, scan):
            continue
        c = claim(scan, claims)
        if c is None:
            continue
        try:
            run = submit_scan(deployment, scan, overrides, c.id, 1)
        except Exception:
            c.release()
            raise
        c.started(1, str(run.id), deployment=deployment)
        logger.info("started %s for %s", run.name, scan)
        started.append({"scan": str(scan), "flow_run_id": str(run.id), "attempt": 1})
        ours.append(c)
    logger.info("%d scans found under %s, %d new runs started, %d resubmitted", len(scans), ", ".join(roots),
                len(started) - resubmitted, resubmitted)
    publish_status(ours, max_retries, logger)
    return started
