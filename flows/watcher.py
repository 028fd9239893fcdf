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

from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tomodenoise.config import RunConfig
from tomodenoise.pipeline import input_identity, store_for
from tomodenoise.paths import PathNotAllowed, confine, input_roots
from tomodenoise.watch import (
    DEFAULT_PATTERNS,
    Claim,
    claim,
    claims_dir_for,
    find_scans,
    list_claims,
    scan_identity,
    status_rows,
)

PIPELINE_DEPLOYMENT = "tomodenoise-pipeline/pipeline"
STATUS_ARTIFACT = "tomodenoise-watcher"


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


def _submit(deployment: str, scan: Path, overrides: dict[str, Any] | None, cid: str, attempt: int):
    """Create attempt ``attempt``'s pipeline run for ``scan`` (idempotent per attempt)."""
    key, name, tags = f"tomodenoise-scan-{cid}", f"{scan.stem}-{cid[:6]}", ["tomodenoise", "watcher"]
    if attempt > 1:
        key, name, tags = f"{key}-{attempt}", f"{name}-a{attempt}", [*tags, "retry", f"attempt-{attempt}"]
    return run_deployment(
        deployment, parameters={"scan": str(scan), "overrides": overrides or {}},
        timeout=0, as_subflow=False, idempotency_key=key, flow_run_name=name, tags=tags,
    )


def _outcome(client, flow_run_id: str, logger) -> tuple[str, str | None] | None:
    """``(state type, message)`` of a finished run, ``("MISSING", why)``, or None while it runs."""
    try:
        run = client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return "MISSING", f"flow run {flow_run_id} no longer exists"
    except Exception as e:  # the server briefly unreachable: ask again next pass
        logger.warning("could not read flow run %s: %s", flow_run_id, e)
        return None
    state = run.state
    if state is None or not state.is_final():
        return None
    return state.type.value, state.message or state.name


def _follow_up(c: Claim, client, deployment: str, overrides: dict[str, Any] | None, max_retries: int,
               retry_backoff_s: float, may_start: bool, logger) -> dict[str, Any] | None:
    """Record a finished run of ``c`` and resubmit when an attempt is due; the run started or None."""
    data = c.read()
    if data["status"] == "running" and data.get("flow_run_id"):
        ended = _outcome(client, data["flow_run_id"], logger)
        if ended is None:
            return None
        new = c.finish_attempt(data["flow_run_id"], *ended, max_retries=max_retries,
                               retry_backoff_s=retry_backoff_s)
        if new is None:  # another watcher pass recorded it first
            return None
        data, n = new, new["attempt"]
        if data["status"] == "failed":
            logger.warning("scan %s failed after %d attempts (flow runs %s): %s", c.scan, n,
                           ", ".join(h["flow_run_id"] for h in data["history"]), data["reason"])
        elif data["status"] == "retrying":
            logger.info("run %s of %s ended %s (%s); attempt %d of %d due at %s", data["flow_run_id"], c.scan,
                        ended[0], data["reason"], n + 1, max_retries + 1, data["next_attempt_at"])
        else:
            logger.info("scan %s: run %s %s", c.scan, data["flow_run_id"], data["status"])
    if data["status"] not in ("retrying", "starting") or not may_start:
        return None
    attempt = c.begin_attempt()
    if attempt is None:  # not due yet, or another pass took it
        return None
    try:
        changed = scan_identity(c.scan) != c.id
    except FileNotFoundError:
        c.give_up("failed", "the scan file no longer exists")
        logger.warning("scan %s failed: the file no longer exists", c.scan)
        return None
    if changed:
        c.give_up("superseded", "the scan file changed since it was claimed (the new file has its own claim)")
        logger.info("scan %s changed since attempt %d; not retried under its old claim", c.scan, attempt - 1)
        return None
    try:
        run = _submit(deployment, c.scan, overrides, c.id, attempt)
    except Exception as e:
        c.abort_attempt(attempt, repr(e))
        logger.warning("could not resubmit %s (attempt %d): %r; trying again next pass", c.scan, attempt, e)
        return None
    c.started(attempt, str(run.id), deployment=deployment)
    logger.info("started %s for %s (attempt %d of %d)", run.name, c.scan, attempt, max_retries + 1)
    return {"scan": str(c.scan), "flow_run_id": str(run.id), "attempt": attempt}


def _publish_status(claims: list[Claim], max_retries: int, logger) -> None:
    """The ``tomodenoise-watcher`` table artifact: every scan's status and flow runs."""
    try:
        data = []
        for c in claims:
            try:
                data.append(c.read())
            except (OSError, ValueError):
                continue
        counts = Counter(d["status"] for d in data)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no scans claimed yet"
        create_table_artifact(
            table=status_rows(data, max_retries), key=STATUS_ARTIFACT,
            description=f"Scans claimed by the new-scan watcher: {summary}. Failed runs are resubmitted "
                        f"up to {max_retries} times; `failed: reason` means every attempt failed.",
        )
    except Exception as e:  # artifacts are for people: never fail the pass over one
        logger.warning("could not publish the watcher status artifact: %r", e)


def _under(path: Path, roots: list[str]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


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

    ours = [c for c in list_claims(claims) if _under(c.scan, roots)]
    with get_client(sync_client=True) as client:
        for c in ours:
            try:
                run = _follow_up(c, client, deployment, overrides, max_retries, retry_backoff_s,
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
        if _already_processed(cfg, scan):
            continue
        c = claim(scan, claims)
        if c is None:
            continue
        try:
            run = _submit(deployment, scan, overrides, c.id, 1)
        except Exception:
            c.release()
            raise
        c.started(1, str(run.id), deployment=deployment)
        logger.info("started %s for %s", run.name, scan)
        started.append({"scan": str(scan), "flow_run_id": str(run.id), "attempt": 1})
        ours.append(c)
    logger.info("%d scans found under %s, %d new runs started, %d resubmitted", len(scans), ", ".join(roots),
                len(started) - resubmitted, resubmitted)
    _publish_status(ours, max_retries, logger)
    return started
