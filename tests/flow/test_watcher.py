"""The watcher flow against the session's real Prefect server: one pipeline run per new scan."""

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tomodenoise.config import RunConfig


async def _register_pipeline_deployment(name: str):
    """A deployment of the real pipeline flow, without a worker: its runs stay scheduled."""
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline_flow

    async with get_client() as client:
        flow_id = await client.create_flow_from_name(pipeline_flow.name)
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
