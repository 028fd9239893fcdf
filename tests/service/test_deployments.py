"""The service end to end against a real Prefect server (``prefect server start``, SQLite).

With basic auth on the API: apply ``deploy/prefect.yaml``, start a process worker, trigger
the pipeline deployment once through the REST API and once by posting the
``tomodenoise.scan.completed`` event, and wait for both runs to complete with their outputs
in place. Unauthenticated calls must be refused.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest

from tomodenoise.api import RetryTransport
from tomodenoise.simulate.scan import simulate_foam_scan

from _server import deployed_worker, start_server  # tests/service/ is on sys.path (pytest rootdir-less import)

AUTH = "tomodenoise:s3cret"
TINY = {
    "recon": {"z_chunk": 2},
    "model": {"name": "msd", "params": {"depth": 4, "width": 1}},
    "train": {"epochs": 2, "patch_size": 16, "patches_per_slice": 1, "progress": False},
    "output": {"previews": 1},
    "compute": {"cluster": "threads", "n_workers": 2},
}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Server with auth, deployments applied from deploy/prefect.yaml, and a running worker."""
    tmp = tmp_path_factory.mktemp("service")
    raw, out = tmp / "raw", tmp / "out"
    raw.mkdir()
    with start_server(tmp / "server", auth=AUTH) as server, deployed_worker(server, tmp, raw, out) as worker_log:
        yield {"server": server, "raw": raw, "out": out, "tmp": tmp, "worker_log": worker_log}


def _http(server, auth=True) -> httpx.Client:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(AUTH.encode()).decode()
    # A busy SQLite server answers 503 (retryable) or slowly: retry as tomodenoise.api.Client does.
    return httpx.Client(base_url=server.url, headers=headers, timeout=30, transport=RetryTransport())


def _logs(service: dict) -> str:
    """The ends of the worker's and the server's logs, for a failure message."""
    return (f"worker log:\n{service['worker_log'].read_text(errors='replace')[-4000:]}\n"
            f"server log:\n{service['server'].log_tail(4000)}")


def _wait_final(http: httpx.Client, run_id: str, timeout: float, service: dict) -> dict:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            run = http.get(f"/flow_runs/{run_id}").raise_for_status().json()
        except httpx.HTTPError as exc:
            pytest.fail(f"reading flow run {run_id}: {exc}\n{_logs(service)}")
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(1)
    pytest.fail(f"flow run {run_id} not finished after {timeout} s\n{_logs(service)}")


def _scan(raw: Path, name: str) -> Path:
    return simulate_foam_scan(raw / f"{name}.h5", size=32, n_angles=48, n_slices=3, i0=200.0, seed=5,
                              n_spheres=50)["scan"]


def test_unauthenticated_calls_are_refused(service):
    server = service["server"]
    with _http(server, auth=False) as http:
        assert http.post("/flows/filter", json={}).status_code == 401
        assert http.get("/deployments/name/tomodenoise-pipeline/pipeline").status_code == 401
    with _http(server) as http:
        assert http.post("/flows/filter", json={}).status_code == 200


def test_deployments_from_prefect_yaml(service):
    with _http(service["server"]) as http:
        pipe = http.get("/deployments/name/tomodenoise-pipeline/pipeline").raise_for_status().json()
        watch = http.get("/deployments/name/tomodenoise-watcher/watcher").raise_for_status().json()
        assert pipe["work_pool_name"] == "tomodenoise" and watch["work_pool_name"] == "tomodenoise"
        assert pipe["parameters"]["config"]["output"]["root"] == str(service["out"])
        assert pipe["job_variables"]["env"]["TOMODENOISE_INPUT_ROOTS"] == str(service["raw"])
        # the UI's form: the flow's parameters with the whole configuration schema
        props = pipe["parameter_openapi_schema"]["properties"]
        assert {"scan", "overrides", "config", "reference"} <= set(props)
        assert watch["schedules"] and watch["schedules"][0]["schedule"]["interval"] == 300
        # the server's scheduler creates the watcher's runs from that schedule
        t_end, scheduled = time.monotonic() + 60, []
        while not scheduled and time.monotonic() < t_end:
            scheduled = http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [watch["id"]]}}}).json()
            time.sleep(1)
        assert scheduled and all(r["state_type"] in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED") for r in scheduled)
        automations = http.post("/automations/filter", json={}).raise_for_status().json()
        assert any(t["trigger"].get("expect") == ["tomodenoise.scan.completed"] for t in automations)


def test_pipeline_runs_from_the_rest_api_and_from_the_event(service):
    """Through tomodenoise.api.Client (the data-management systems' client), as docs/API.md shows."""
    from tomodenoise.api import ApiError, Client

    server, raw, out = service["server"], service["raw"], service["out"]
    scan_api, scan_event = _scan(raw, "by_api"), _scan(raw, "by_event")
    with Client(server.url, auth=AUTH) as api, _http(server) as http:
        run_api = api.start_run(scan_api, overrides=TINY, roots=[raw])
        api.post_scan_completed(scan_event, overrides=TINY, roots=[raw])

        # the event's run appears once the trigger has fired
        dep_id = api.deployment_id()
        t_end, run_event = time.monotonic() + 90, None
        while run_event is None and time.monotonic() < t_end:
            runs = http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [dep_id]}}}).json()
            run_event = next((r["id"] for r in runs if r["parameters"].get("scan") == str(scan_event)), None)
            time.sleep(1)
        assert run_event is not None, "the scan-completed event did not start a pipeline run"

        for run_id, name in ((run_api, "by_api"), (run_event, "by_event")):
            try:
                final = api.wait(run_id, timeout=300)
            except (TimeoutError, ApiError) as exc:
                pytest.fail(f"{name}: {exc}\n{_logs(service)}")
            assert final["state"] == "COMPLETED", (final, _logs(service))
            assert final["parameters"]["overrides"] == TINY
            # the run tells where its output is
            assert final["store"] == str(out / name)

    for name in ("by_api", "by_event"):
        root = out / name
        assert (root / "scan.zarr" / "zarr.json").exists()
        assert (root / "model" / "best.pt").exists()
        assert (root / "report" / "metrics.json").exists()


def test_a_scan_outside_the_input_roots_fails_on_the_worker(service):
    """Also when the caller tries to widen the roots with the run's own job variables."""
    server = service["server"]
    outside = _scan(service["tmp"], "outside")
    with _http(server) as http:
        dep = http.get("/deployments/name/tomodenoise-pipeline/pipeline").raise_for_status().json()
        plain = {"parameters": {"scan": str(outside), "overrides": TINY}}
        widened = dict(plain, job_variables={"env": {"TOMODENOISE_INPUT_ROOTS": "/"}})
        runs = [http.post(f"/deployments/{dep['id']}/create_flow_run", json=body).raise_for_status().json()
                for body in (plain, widened)]
        finals = [_wait_final(http, run["id"], 180, service) for run in runs]
    assert [f["state_type"] for f in finals] == ["FAILED", "FAILED"]
    assert not (service["out"] / "outside").exists()


def test_dynamic_and_xrdct_scans_run_through_the_deployment(service):
    """Both modalities through the deployment and a worker, chunk-parallel on the flow's runner."""
    import xarray as xr

    from tomodenoise.api import ApiError, Client
    from tomodenoise.simulate.dynamic import simulate_dynamic_scan
    from tomodenoise.simulate.xrdct_phantom import simulate_xrdct_scan

    server, raw, out = service["server"], service["raw"], service["out"]
    dyn = simulate_dynamic_scan(raw / "dyn.h5", size=32, n_slices=2, n_steps=3, projections_per_step=40.5,
                                seed=1)["scan"]
    xrd = simulate_xrdct_scan(raw / "xrd.h5", size=24, n_angles=40, n_channels=6, counts=100.0, seed=1)["scan"]
    dyn_over = {**TINY, "time": {"window": "angle", "span_deg": 180}}
    with Client(server.url, auth=AUTH) as api:
        runs = {"dyn": api.start_run(dyn, overrides=dyn_over, roots=[raw]),
                "xrd": api.start_run(xrd, overrides=TINY, roots=[raw])}
        for name, run_id in runs.items():
            try:
                final = api.wait(run_id, timeout=300)
            except (TimeoutError, ApiError) as exc:
                pytest.fail(f"{name}: {exc}\n{_logs(service)}")
            assert final["state"] == "COMPLETED", (final, _logs(service))
    d = xr.open_zarr(out / "dyn" / "scan.zarr")
    assert d.attrs["modality"] == "dynamic" and d.denoised.shape == (3, 1, 2, 32, 32)
    assert d.attrs["stages"]["reconstruct"]["chunks"] == 4 * 3 * 1  # (split, time, z-slab of 2)
    x = xr.open_zarr(out / "xrd" / "scan.zarr")
    assert x.attrs["modality"] == "xrdct" and x.denoised.shape == (1, 6, 1, 24, 24)
    assert (out / "dyn" / "report" / "time_strip.png").exists() and (out / "xrd" / "report" / "spectra.png").exists()
