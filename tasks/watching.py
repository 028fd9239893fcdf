"""The Prefect client side of the new-scan watcher (:mod:`flows.watcher`): starting a scan's
pipeline run, following the runs it started, and the ``tomodenoise-watcher`` status artifact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from tomodenoise.watch import Claim, scan_identity, status_rows

__all__ = ["STATUS_ARTIFACT", "follow_up", "publish_status", "run_outcome", "submit_scan", "under_roots"]

STATUS_ARTIFACT = "tomodenoise-watcher"


def submit_scan(deployment: str, scan: Path, overrides: dict[str, Any] | None, cid: str, attempt: int):
    """Create attempt ``attempt``'s pipeline run for ``scan`` (idempotent per attempt)."""
    key, name, tags = f"tomodenoise-scan-{cid}", f"{scan.stem}-{cid[:6]}", ["tomodenoise", "watcher"]
    if attempt > 1:
        key, name, tags = f"{key}-{attempt}", f"{name}-a{attempt}", [*tags, "retry", f"attempt-{attempt}"]
    return run_deployment(
        deployment, parameters={"scan": str(scan), "overrides": overrides or {}},
        timeout=0, as_subflow=False, idempotency_key=key, flow_run_name=name, tags=tags,
    )


def run_outcome(client, flow_run_id: str, logger) -> tuple[str, str | None] | None:
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


def follow_up(c: Claim, client, deployment: str, overrides: dict[str, Any] | None, max_retries: int,
               retry_backoff_s: float, may_start: bool, logger) -> dict[str, Any] | None:
    """Record a finished run of ``c`` and resubmit when an attempt is due; the run started or None."""
    data = c.read()
    if data["status"] == "running" and data.get("flow_run_id"):
        ended = run_outcome(client, data["flow_run_id"], logger)
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
        run = submit_scan(deployment, c.scan, overrides, c.id, attempt)
    except Exception as e:
        c.abort_attempt(attempt, repr(e))
        logger.warning("could not resubmit %s (attempt %d): %r; trying again next pass", c.scan, attempt, e)
        return None
    c.started(attempt, str(run.id), deployment=deployment)
    logger.info("started %s for %s (attempt %d of %d)", run.name, c.scan, attempt, max_retries + 1)
    return {"scan": str(c.scan), "flow_run_id": str(run.id), "attempt": attempt}


def publish_status(claims: list[Claim], max_retries: int, logger) -> None:
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


def under_roots(path: Path, roots: list[str]) -> bool:
    return any(path.is_relative_to(r) for r in roots)
