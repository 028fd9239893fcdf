"""tomodenoise.api against a mock transport: headers, errors, request bodies (no server)."""

import base64
import json
import subprocess
import sys
import uuid

import httpx
import pytest

from tomodenoise.api import (
    ApiError,
    BadRequest,
    Client,
    artifact_key,
    check_parameters,
    _link_target,
    main,
    scan_resource_id,
    store_artifact_key,
)
from tomodenoise.paths import PathNotAllowed

URL = "http://prefect.test:4200/api"
DEP_ID = str(uuid.uuid4())
RUN_ID = str(uuid.uuid4())


def _client(handler, **kw):
    return Client(URL, transport=httpx.MockTransport(handler), **{"backoff": 0, **kw})


def test_basic_auth_header_as_prefect_sends_it(monkeypatch):
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"id": DEP_ID})

    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    _client(handler, auth="admin:s3cr:t é").deployment_id()
    expected = "Basic " + base64.b64encode("admin:s3cr:t é".encode()).decode()
    assert seen[0].headers["Authorization"] == expected
    assert str(seen[0].url) == f"{URL}/deployments/name/tomodenoise-pipeline/pipeline"


def test_auth_and_url_from_environment(monkeypatch):
    seen = []
    monkeypatch.setenv("PREFECT_API_URL", URL + "/")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "user:pass")
    api = Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json={"id": DEP_ID})))
    assert api.api_url == URL
    api.deployment_id()
    assert base64.b64decode(seen[0].headers["Authorization"].split()[1]) == b"user:pass"


def test_no_auth_header_without_auth_string(monkeypatch):
    seen = []
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    _client(lambda r: seen.append(r) or httpx.Response(200, json={"id": DEP_ID})).deployment_id()
    assert "Authorization" not in seen[0].headers


def test_missing_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ApiError, match="PREFECT_API_URL"):
        Client()


def test_401_says_to_set_the_auth_string(monkeypatch):
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    # what Prefect 3.8's server answers (prefect/server/api/server.py, token_validation)
    api = _client(lambda r: httpx.Response(401, json={"exception_message": "Unauthorized"}))
    with pytest.raises(ApiError, match="PREFECT_API_AUTH_STRING") as info:
        api.start_run("/data/scan.h5", roots=[])
    assert info.value.status_code == 401
    assert info.value.detail == "Unauthorized"


def test_404_carries_the_servers_detail():
    api = _client(lambda r: httpx.Response(404, json={"detail": "Deployment not found"}))
    with pytest.raises(ApiError, match="not found") as info:
        api.start_run("/data/scan.h5", deployment="nope/nope", roots=[])
    assert info.value.status_code == 404
    assert info.value.detail == "Deployment not found"


def test_connection_error_is_wrapped():
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiError, match="no answer") as info:
        _client(handler, retries=2).get_run(RUN_ID)
    assert info.value.status_code is None
    assert len(calls) == 3  # the first try and two retries


def test_busy_server_503_is_retried_until_it_answers():
    answers = iter([httpx.Response(503, json={"exception_message": "Service Unavailable"}),
                    httpx.Response(503, headers={"Retry-After": "0"}),
                    httpx.Response(200, json={"id": DEP_ID})])
    calls = []

    def handler(request):
        calls.append(request)
        return next(answers)

    assert _client(handler).deployment_id() == DEP_ID
    assert len(calls) == 3


def test_503_that_does_not_go_away_is_an_error_after_the_retries():
    calls = []
    api = _client(lambda r: calls.append(r) or httpx.Response(503, json={"exception_message": "Service Unavailable"}),
                  retries=2)
    with pytest.raises(ApiError, match="503") as info:
        api.deployment_id()
    assert info.value.status_code == 503 and len(calls) == 3
    calls.clear()
    with pytest.raises(ApiError, match="503"):
        _client(lambda r: calls.append(r) or httpx.Response(503), retries=0).deployment_id()
    assert len(calls) == 1


def test_read_timeout_retries_a_get_but_not_a_post():
    calls = []

    def handler(request):
        calls.append(request.method)
        raise httpx.ReadTimeout("timed out", request=request)

    api = _client(handler, retries=2)
    with pytest.raises(ApiError, match="ReadTimeout"):
        api.deployment_id()
    assert calls == ["GET"] * 3

    def post_times_out(request):
        calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"id": DEP_ID})
        raise httpx.ReadTimeout("timed out", request=request)

    calls.clear()
    with pytest.raises(ApiError, match="ReadTimeout"):  # the run may have been created: not sent twice
        _client(post_times_out, retries=2).start_run("/data/scan.h5", roots=[])
    assert calls == ["GET", "POST"]


def test_retry_transport_wraps_any_transport():
    from tomodenoise.api import RetryTransport

    answers = iter([httpx.Response(502), httpx.Response(200, json={"ok": True})])
    with httpx.Client(transport=RetryTransport(httpx.MockTransport(lambda r: next(answers)), backoff=0)) as http:
        assert http.post(URL + "/x", json={}).json() == {"ok": True}


def test_start_run_request_body():
    seen = []

    def handler(request):
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"id": DEP_ID})
        return httpx.Response(201, json={"id": RUN_ID})

    run = _client(handler).start_run("/data/scan.h5", {"train": {"epochs": 5}}, roots=[], idempotency_key="k1")
    assert run == RUN_ID
    assert seen[1].method == "POST" and str(seen[1].url) == f"{URL}/deployments/{DEP_ID}/create_flow_run"
    assert json.loads(seen[1].content) == {
        "parameters": {"scan": "/data/scan.h5", "overrides": {"train": {"epochs": 5}}}, "idempotency_key": "k1"}


def test_confinement_before_any_request(tmp_path, monkeypatch):
    seen = []
    api = _client(lambda r: seen.append(r) or httpx.Response(200, json={"id": DEP_ID}))
    (tmp_path / "raw").mkdir()
    with pytest.raises(PathNotAllowed):
        api.start_run(tmp_path / "elsewhere.h5", roots=[tmp_path / "raw"])
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(tmp_path / "raw"))
    with pytest.raises(PathNotAllowed):
        api.post_scan_completed(tmp_path / "raw" / ".." / "elsewhere.h5")
    assert seen == []


def test_event_body():
    seen = []
    api = _client(lambda r: seen.append(r) or httpx.Response(204))
    event_id = api.post_scan_completed("/data/s.h5", {"splits": {"k": 4}}, roots=[])
    assert str(seen[0].url) == f"{URL}/events"
    [ev] = json.loads(seen[0].content)
    assert ev["id"] == event_id and ev["event"] == "tomodenoise.scan.completed"
    assert ev["resource"] == {"prefect.resource.id": scan_resource_id("/data/s.h5"), "tomodenoise.scan.path": "/data/s.h5"}
    assert scan_resource_id("/data/s.h5").startswith("tomodenoise.scan.") and len(scan_resource_id("x")) == 17 + 16
    assert ev["payload"] == {"path": "/data/s.h5", "overrides": {"splits": {"k": 4}}}
    assert "T" in ev["occurred"] and ev["occurred"].endswith("+00:00")


def test_get_run_and_store():
    def handler(request):
        if request.url.path.endswith("/artifacts/filter"):
            body = json.loads(request.content)
            assert body["artifacts"]["flow_run_id"] == {"any_": [RUN_ID]}
            return httpx.Response(200, json=[{"key": "store-scan-1", "data": "[/out/scan_1](/out/scan_1)"}])
        return httpx.Response(200, json={"id": RUN_ID, "name": "brave-fox", "parameters": {"scan": "/s.h5"},
                                         "state": {"type": "COMPLETED", "name": "Completed"},
                                         "tags": ["beamline", "quality:below_baseline"]})

    run = _client(handler).get_run(RUN_ID)
    assert run["state"] == "COMPLETED" and run["state_name"] == "Completed" and run["name"] == "brave-fox"
    assert run["quality"] == "below_baseline"
    assert run["store"] == "/out/scan_1" and run["parameters"] == {"scan": "/s.h5"}
    with pytest.raises(ValueError, match="UUID"):
        _client(handler).get_run("not-a-run")


def test_wait_times_out():
    api = _client(lambda r: httpx.Response(200, json=[] if r.method == "POST" else
                                           {"id": RUN_ID, "state": {"type": "SCHEDULED", "name": "Late"}}))
    with pytest.raises(TimeoutError, match="Late"):
        api.wait(RUN_ID, timeout=0.05, poll=0.01)


def test_helpers():
    assert store_artifact_key("Scan_0042.v2") == "store-scan-0042-v2"
    assert _link_target("[text](/out/a b)") == "/out/a b"
    assert _link_target("/out/a") == "/out/a"
    assert artifact_key("report", "Scan_0042.v2") == "report-scan-0042-v2"


def test_cli_reports_errors(monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["status", RUN_ID]) == 1
    assert "PREFECT_API_URL" in capsys.readouterr().err


def _refused(handler_calls, call, status, *words):
    """``call()`` raises BadRequest with ``status`` and a one-line message holding ``words``; nothing sent."""
    with pytest.raises(BadRequest) as info:
        call()
    message = str(info.value)
    assert info.value.status_code == status and "\n" not in message, message
    for word in words:
        assert word in message, message
    assert handler_calls == []
    return info.value


@pytest.mark.parametrize("method", ["start_run", "post_scan_completed"])
def test_bad_parameters_are_refused_before_any_request(method):
    seen = []
    api = _client(lambda r: seen.append(r) or httpx.Response(201, json={"id": RUN_ID}))
    send = getattr(api, method)
    # an override key the configuration does not have: which section, which key, what it has
    err = _refused(seen, lambda: send("/data/s.h5", {"train": {"epoch": 5}}, roots=[]), 422,
                   "'overrides'", "train.epoch = 5", "unknown key", "epochs")
    assert err.parameter == "overrides"
    _refused(seen, lambda: send("/data/s.h5", {"trian": {"epochs": 5}}, roots=[]), 422, "trian = ", "unknown section", "train")
    # a value the configuration refuses: the key, the value, what is accepted
    _refused(seen, lambda: send("/data/s.h5", {"train": {"epochs": -1}}, roots=[]), 422,
             "train.epochs = -1", ">= 1")
    _refused(seen, lambda: send("/data/s.h5", {"input": {"format": "tif"}}, roots=[]), 422,
             "input.format = 'tif'", "'tiff'")
    # overrides of the wrong type
    _refused(seen, lambda: send("/data/s.h5", [("train", 5)], roots=[]), 422, "'overrides'", "list", "mapping")


def test_check_parameters_names_and_types():
    ok = {"scan": "/data/s.h5", "overrides": {"train": {"epochs": 5}}, "config": None, "reference": None}
    assert check_parameters(ok) == ok
    assert check_parameters({"scan": "/s.h5", "config": {"train": {"epochs": 2}}, "reference": "/r.npy"})
    err = _refused([], lambda: check_parameters({"scan": "/s.h5", "overides": {}}), 409,
                   "'overides'", "scan, overrides, config, reference")
    assert err.parameter == "overides"
    _refused([], lambda: check_parameters({"scan": 42}), 422, "'scan' = 42", "int", "path")
    _refused([], lambda: check_parameters({"scan": "/s.h5", "reference": ["a"]}), 422, "'reference'", "list")
    _refused([], lambda: check_parameters({"scan": "/s.h5", "config": "run.yaml"}), 422, "'config'", "str")
    _refused([], lambda: check_parameters({"overrides": {}}), 422, "'scan' is missing")
    # overrides are checked on top of the config given
    _refused([], lambda: check_parameters({"scan": "/s.h5", "config": {"train": {"lr": "fast"}}}), 422,
             "'config'", "train.lr = 'fast'", "number")
    assert issubclass(BadRequest, ValueError)


def test_start_run_sends_config_and_reference():
    seen = []
    api = _client(lambda r: seen.append(r) or httpx.Response(200 if r.method == "GET" else 201,
                                                             json={"id": DEP_ID if r.method == "GET" else RUN_ID}))
    api.start_run("/data/s.h5", roots=[], config={"train": {"epochs": 3}}, reference="/data/clean.npy")
    assert json.loads(seen[1].content)["parameters"] == {
        "scan": "/data/s.h5", "overrides": {}, "config": {"train": {"epochs": 3}}, "reference": "/data/clean.npy"}


def test_cli_refusal_exits_2_with_one_sentence(monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing is sent
    monkeypatch.delenv("TOMODENOISE_INPUT_ROOTS", raising=False)
    assert main(["start", "/data/s.h5", "--set", "train.epoch=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: parameter 'overrides'") and "train.epoch" in err and "\n" not in err
    assert main(["event", "/data/s.h5", "--set", "train.epochs=0"]) == 2
    assert "train.epochs = 0" in capsys.readouterr().err


def test_module_does_not_import_prefect():
    code = "import sys, tomodenoise.api; assert 'prefect' not in sys.modules, 'prefect imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_networks_parameters_are_left_to_the_deployment_without_its_config():
    from tomodenoise.api import BadRequest, check_parameters

    # the deployment may run a U-Net: its parameters are not checked against the default MS-D
    check_parameters({"scan": "/data/s.h5", "overrides": {"model": {"params": {"base_channels": 16}}}})
    with pytest.raises(BadRequest):  # with the network named, they are checked
        check_parameters({"scan": "/data/s.h5", "overrides": {"model": {"name": "msd", "params": {"nonsense": 1}}}})
