"""The watcher flow against the session's real Prefect server: one pipeline run per new scan,
failed runs resubmitted with backoff, then marked failed in the status artifact."""

import asyncio
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tomodenoise.config import RunConfig


async def _register_pipeline_deployment(name: str):
    """A deployment of the real pipeline flow, without a worker: its runs stay scheduled."""
    from prefect.client.orchestration import get_client

    from flows.watcher import PIPELINE_DEPLOYMENT

    async with get_client() as client:  # the pipeline flow's name, without importing flows.pipeline
        flow_id = await client.create_flow_from_name(PIPELINE_DEPLOYMENT.split("/")[0])
        return await client.create_deployment(flow_id=flow_id, name=name, entrypoint="flows/pipeline.py:pipeline_flow")


async def _runs_of(deployment_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_overlapping_watchers_start_each_new_scan_once(tmp_path, monkeypatch):
    from flows.watcher import watcher_flow

    raw = tmp_path / "raw"
    (raw / "b").mkdir(parents=True)
    for p in (raw / "a.h5", raw / "b" / "c.nxs"):
        p.write_bytes(b"scan")
    (raw / "ignored.txt").write_text("not a scan")
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(raw))
    dep_name = f"watch-{os.getpid()}-{tmp_path.name}"[:60]
    dep_id = asyncio.run(_register_pipeline_deployment(dep_name))
    cfg = RunConfig()
    cfg.output.root = str(tmp_path / "out")

    def watch():
        return watcher_flow(min_age_s=0, deployment=f"tomodenoise-pipeline/{dep_name}", config=cfg,
                            overrides={"train": {"epochs": 3}})

    with ThreadPoolExecutor(2) as pool:  # two watcher runs at the same time
        started = [s for r in pool.map(lambda _: watch(), range(2)) for s in r]
    assert sorted(s["scan"] for s in started) == [str((raw / "a.h5").resolve()), str((raw / "b" / "c.nxs").resolve())]
    runs = asyncio.run(_runs_of(dep_id))
    assert len(runs) == 2
    assert {r.parameters["scan"] for r in runs} == {s["scan"] for s in started}
    assert all(r.parameters["overrides"] == {"train": {"epochs": 3}} for r in runs)

    assert watch() == []  # a third pass: nothing new
    shutil.copy(raw / "a.h5", raw / "d.h5")  # a new scan arrives
    assert [s["scan"] for s in watch()] == [str((raw / "d.h5").resolve())]
    assert len(asyncio.run(_runs_of(dep_id))) == 3


def test_watcher_refuses_roots_outside_the_configured_ones(tmp_path, monkeypatch):
    from flows.watcher import watcher_flow
    from tomodenoise.paths import PathNotAllowed

    (tmp_path / "raw").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(tmp_path / "raw"))
    with pytest.raises(PathNotAllowed):
        watcher_flow(roots=[str(tmp_path / "other")], min_age_s=0)


def _set_states(states):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for run_id, state in states.items():
            if state is None:
                client.delete_flow_run(run_id)
            else:
                client.set_flow_run_state(run_id, state, force=True)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _latest_status_table():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tasks.watching import STATUS_ARTIFACT

    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[STATUS_ARTIFACT])),
                                       sort=ArtifactSort.CREATED_DESC, limit=1)
    data = json.loads(art.data) if isinstance(art.data, str) else art.data
    return {row["scan"]: row for row in data}


def test_a_failed_run_is_resubmitted_with_backoff_then_marked_failed_in_the_ui(tmp_path, monkeypatch):
    from prefect.states import Completed, Crashed, Failed

    from flows.watcher import watcher_flow
    from tomodenoise.watch import claims_dir_for, list_claims

    raw = tmp_path / "raw"
    raw.mkdir()
    bad, good = (raw / "bad.h5").resolve(), (raw / "good.h5").resolve()
    bad.write_bytes(b"scan")
    good.write_bytes(b"another scan")
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(raw))
    dep_name = f"retry-{os.getpid()}-{tmp_path.name}"[:60]
    dep_id = asyncio.run(_register_pipeline_deployment(dep_name))
    cfg = RunConfig()
    cfg.output.root = str(tmp_path / "out")

    def watch(backoff_s=0.0):
        return watcher_flow(min_age_s=0, deployment=f"tomodenoise-pipeline/{dep_name}", config=cfg,
                            max_retries=2, retry_backoff_s=backoff_s)

    def claim_of(scan):
        (c,) = [c for c in list_claims(claims_dir_for(cfg.output.root)) if c.scan == scan]
        return c

    first = {s["scan"]: s["flow_run_id"] for s in watch()}
    assert set(first) == {str(bad), str(good)}
    _set_states({first[str(good)]: Completed(), first[str(bad)]: Failed(message="boom: the reconstruction failed")})

    # the failure is seen; the resubmission waits for its backoff
    t0 = time.time()
    assert watch(backoff_s=3600) == []
    d = claim_of(bad).read()
    assert d["status"] == "retrying" and d["reason"] == "boom: the reconstruction failed"
    assert t0 + 3500 < datetime.fromisoformat(d["next_attempt_at"]).timestamp() < time.time() + 3700
    assert claim_of(good).read()["status"] == "completed"
    table = _latest_status_table()
    assert table[str(good)]["status"] == "completed"
    assert table[str(bad)]["status"].startswith(f"retrying at {d['next_attempt_at']}")

    # an hour later (the claim's due time moved back): attempt 2, with its own idempotency key
    c = claim_of(bad)
    c.record(next_attempt_at="2000-01-01T00:00:00+00:00")
    (second,) = watch()
    assert (second["scan"], second["attempt"]) == (str(bad), 2)
    _set_states({second["flow_run_id"]: None})  # the run vanished (deleted)
    (third,) = watch()
    assert third["attempt"] == 3
    _set_states({third["flow_run_id"]: Crashed(message="worker lost")})

    records = _Records()  # not caplog: the first flow import reconfigures logging, dropping its handler
    logging.getLogger("prefect.flow_runs").addHandler(records)
    try:
        assert watch() == []  # max_retries = 2 resubmissions used up: failed
    finally:
        logging.getLogger("prefect.flow_runs").removeHandler(records)
    d = claim_of(bad).read()
    assert (d["status"], d["attempt"], d["reason"]) == ("failed", 3, "worker lost")
    assert [h["state"] for h in d["history"]] == ["FAILED", "MISSING", "CRASHED"]
    warned = [r.getMessage() for r in records.records if r.levelno == logging.WARNING]
    assert any(str(bad) in m and "3 attempts" in m and "worker lost" in m for m in warned), warned
    row = _latest_status_table()[str(bad)]
    assert row["status"] == "failed: worker lost" and row["attempt"] == "3/3"
    assert row["flow_run_id"] == third["flow_run_id"]
    assert row["runs"].split(", ") == [first[str(bad)], second["flow_run_id"], third["flow_run_id"]]

    assert watch() == []  # a failed scan is not retried again
    runs = asyncio.run(_runs_of(dep_id))
    assert len(runs) == 3  # good, bad attempts 1 and 3 (attempt 2 was deleted)
    by_id = {str(r.id): r for r in runs}
    assert by_id[third["flow_run_id"]].idempotency_key == f"tomodenoise-scan-{c.id}-3"
    assert "attempt-3" in by_id[third["flow_run_id"]].tags and by_id[third["flow_run_id"]].name.endswith("-a3")
