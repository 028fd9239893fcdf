"""tomodenoise.api against the session's real Prefect server (tests/flow/conftest.py).

A stand-in flow named like the pipeline (``tomodenoise-pipeline``) is deployed as ``pipeline``
without a worker: runs created over the API stay SCHEDULED; a run of the stand-in called
in-process completes and publishes the ``store-<scan-id>`` link artifact the real flow publishes.
"""

import asyncio
import inspect
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.artifacts import create_link_artifact

from tomodenoise.api import FLOW_PARAMETERS, ApiError, BadRequest, Client, scan_resource_id, store_artifact_key
from tomodenoise.paths import PathNotAllowed


@flow(name="tomodenoise-pipeline")
def standin_pipeline(scan: str, overrides: dict | None = None) -> str:
    """What the real pipeline flow publishes, without the work: the store link artifact."""
    scan_id = Path(scan).stem
    store = f"/srv/tomodenoise-output/{scan_id}"
    create_link_artifact(link=store, link_text=store, key=store_artifact_key(scan_id), description="output store")
    return store


@pytest.fixture(scope="module")
def api_url():
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness sets PREFECT_API_URL"
    return url


@pytest.fixture(scope="module")
def api(api_url):
    with Client(api_url, auth=None) as client:
        yield client


@pytest.fixture(scope="module")
def deployment_id(api_url):
    from prefect.client.orchestration import get_client
    from prefect.utilities.callables import parameter_schema

    async def register():
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(standin_pipeline.name)
            return await client.create_deployment(
                flow_id=flow_id, name="pipeline", entrypoint="tests/flow/test_api_flow.py:standin_pipeline",
                parameter_openapi_schema=parameter_schema(standin_pipeline).model_dump_for_openapi(),
                enforce_parameter_schema=True)

    return str(asyncio.run(register()))


async def _flow_run(run_id):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(run_id)


async def _count_runs(deployment_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        return await client.count_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_start_run_creates_a_scheduled_run_of_the_deployment(api, deployment_id, tmp_path):
    scan = tmp_path / "raw" / "scan_0042.h5"
    scan.parent.mkdir()
    scan.write_bytes(b"scan")
    run_id = api.start_run(scan, {"train": {"epochs": 5}}, roots=[tmp_path / "raw"])
    fr = asyncio.run(_flow_run(run_id))
    assert str(fr.deployment_id) == deployment_id
    assert fr.state.type.value == "SCHEDULED"
    assert fr.parameters == {"scan": str(scan.resolve()), "overrides": {"train": {"epochs": 5}}}

    run = api.get_run(run_id)
    assert run["state"] == "SCHEDULED" and run["store"] is None and run["name"] == fr.name
    assert run["parameters"]["scan"] == str(scan.resolve())

    # the same idempotency key gives the same run
    again = [api.start_run(scan, roots=[], idempotency_key=f"k-{run_id}") for _ in range(2)]
    assert again[0] == again[1] != run_id


def test_confinement_refuses_paths_outside_the_roots(api, deployment_id, tmp_path, monkeypatch):
    (tmp_path / "raw").mkdir()
    before = asyncio.run(_count_runs(deployment_id))
    with pytest.raises(PathNotAllowed):
        api.start_run(tmp_path / "raw" / ".." / "secret.h5", roots=[tmp_path / "raw"])
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(tmp_path / "raw"))
    with pytest.raises(PathNotAllowed):
        api.start_run("/etc/passwd")
    with pytest.raises(PathNotAllowed):
        api.post_scan_completed("/etc/passwd")
    assert asyncio.run(_count_runs(deployment_id)) == before


def test_api_knows_the_pipeline_flows_parameters():
    from flows.pipeline import pipeline_flow

    assert list(inspect.signature(pipeline_flow.fn).parameters) == list(FLOW_PARAMETERS)


def test_parameters_the_flow_cannot_take_create_no_run(api, deployment_id):
    before = asyncio.run(_count_runs(deployment_id))
    with pytest.raises(BadRequest, match="train.epoch = 5") as info:
        api.start_run("/data/scan.h5", {"train": {"epoch": 5}}, roots=[])
    assert info.value.status_code == 422
    assert asyncio.run(_count_runs(deployment_id)) == before


def test_unknown_deployment_is_a_404(api):
    with pytest.raises(ApiError, match="Deployment not found") as info:
        api.start_run("/data/scan.h5", deployment="tomodenoise-pipeline/no-such-deployment", roots=[])
    assert info.value.status_code == 404
    assert info.value.detail == "Deployment not found"


def test_get_run_of_a_completed_run_gives_the_store(api, tmp_path):
    state = standin_pipeline(str(tmp_path / "Scan_7.h5"), {"train": {"epochs": 1}}, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    run = api.wait(run_id, timeout=10, poll=0.2)
    assert run["state"] == "COMPLETED" and run["state_name"] == "Completed"
    assert run["store"] == "/srv/tomodenoise-output/Scan_7"
    assert run["parameters"] == {"scan": str(tmp_path / "Scan_7.h5"), "overrides": {"train": {"epochs": 1}}}


def test_post_scan_completed_records_the_event(api, api_url, tmp_path):
    scan = str(tmp_path / "scan_9.h5")
    event_id = api.post_scan_completed(scan, {"splits": {"k": 4}}, roots=[])
    assert uuid.UUID(event_id)
    # the server persists events in batches (flush interval 5 s): poll the read endpoint
    deadline = time.monotonic() + 20
    while True:
        r = httpx.post(f"{api_url}/events/filter", json={"filter": {"id": {"id": [event_id]}}, "limit": 5})
        r.raise_for_status()
        events = r.json()["events"]
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(events) == 1, "event not recorded"
    ev = events[0]
    assert ev["event"] == "tomodenoise.scan.completed"
    assert ev["resource"] == {"prefect.resource.id": scan_resource_id(scan), "tomodenoise.scan.path": scan}
    assert ev["payload"] == {"path": scan, "overrides": {"splits": {"k": 4}}}
