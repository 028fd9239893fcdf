"""Start and follow tomodenoise runs over the Prefect REST API, for data-management systems.

This module talks HTTP only (``httpx``); it never imports Prefect, so a beamline's data
management system can use it with nothing but this package (or copy the few requests it makes,
see ``docs/API.md``)::

    from tomodenoise.api import Client

    api = Client()                                   # PREFECT_API_URL, PREFECT_API_AUTH_STRING
    run_id = api.start_run("/data/raw/scan_0042.h5", overrides={"train": {"epochs": 50}})
    api.wait(run_id, timeout=3600)                   # {"state": "COMPLETED", "store": "/out/scan_0042", ...}

    api.post_scan_completed("/data/raw/scan_0043.h5") # the deployment's trigger starts the run

or from a shell::

    python -m tomodenoise.api start /data/raw/scan_0042.h5 --set train.epochs=50
    python -m tomodenoise.api event /data/raw/scan_0043.h5
    python -m tomodenoise.api status RUN_ID --wait 3600

Endpoints (Prefect 3.8 server, all under ``PREFECT_API_URL``, which ends in ``/api``):

- ``GET  /deployments/name/{flow}/{deployment}``      the deployment's id
- ``POST /deployments/{id}/create_flow_run``          a SCHEDULED flow run; a worker picks it up
- ``POST /events``                                    a list of events (the scan-completed trigger)
- ``GET  /flow_runs/{id}``                            state and parameters of a run
- ``POST /artifacts/filter``                          the run's ``store-<scan-id>`` link artifact

Scan paths are checked against ``TOMODENOISE_INPUT_ROOTS`` here when it is set (or ``roots`` is
given), and again by the flow on the worker, whose roots are the ones that count. The parameters
are checked against the pipeline flow's (:func:`check_parameters`) before anything is sent: a
request the flow cannot take raises :class:`BadRequest` and creates nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx

from tomodenoise.config import parse_sets
from tomodenoise.flow_parameters import FLOW_PARAMETERS, BadRequest, check_parameters
from tomodenoise.paths import PathNotAllowed, confine, input_roots

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "FINAL_STATES",
    "SCAN_COMPLETED_EVENT",
    "FLOW_PARAMETERS",
    "ApiError",
    "BadRequest",
    "Client",
    "PathNotAllowed",
    "RetryTransport",
    "artifact_key",
    "check_parameters",
    "main",
    "send_with_retries",
    "scan_resource_id",
    "store_artifact_key",
]

DEFAULT_DEPLOYMENT = "tomodenoise-pipeline/pipeline"
SCAN_COMPLETED_EVENT = "tomodenoise.scan.completed"
STORE_ARTIFACT_PREFIX = "store-"
#: Prefect's terminal state types: a run in one of these will not change any more.
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})

ENV_API_URL = "PREFECT_API_URL"
ENV_AUTH_STRING = "PREFECT_API_AUTH_STRING"
ENV_API_KEY = "PREFECT_API_KEY"


class ApiError(RuntimeError):
    """A request to the Prefect API that failed: ``status_code`` (None: no answer) and ``detail``."""

    def __init__(self, message: str, status_code: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


def scan_resource_id(path: str) -> str:
    """The event resource id of a scan: ``tomodenoise.scan.<sha256(path)[:16]>``."""
    return "tomodenoise.scan." + hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


def artifact_key(prefix: str, name: str) -> str:
    """The key of a run's artifact: ``<prefix>-<name>`` with the name in lowercase ASCII letters,
    digits and dashes (``report-<scan-id>``, ``store-<scan-id>``, ``centre-<scan-id>``)."""
    key = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return f"{prefix}-{key or 'scan'}"


def store_artifact_key(scan_id: str) -> str:
    """The key of a run's store link artifact: ``store-<scan-id>`` (:func:`artifact_key`)."""
    return artifact_key(STORE_ARTIFACT_PREFIX.rstrip("-"), scan_id)


def _basic_auth_header(auth: str) -> str:
    # As Prefect's own client does (prefect/client/orchestration/__init__.py): base64 of the
    # UTF-8 "user:pass" string, "Basic" scheme, in the Authorization header.
    return "Basic " + base64.b64encode(auth.encode("utf-8")).decode("ascii")


def _detail(response: httpx.Response) -> Any:
    """The server's explanation: FastAPI's ``detail``, Prefect's ``exception_message``, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        for k in ("detail", "exception_message", "message"):
            if body.get(k) is not None:
                detail = body[k]
                if k == "exception_message" and body.get("exception_detail"):
                    detail = f"{detail}: {body['exception_detail']}"
                return detail
    return body


_LINK = re.compile(r"^\[(?P<text>.*)\]\((?P<link>.*)\)$", re.DOTALL)


def _link_target(data: Any) -> Any:
    """A link artifact's target: Prefect stores ``[text](link)``; a bare path is taken as it is."""
    if isinstance(data, str):
        m = _LINK.match(data.strip())
        return m.group("link") if m else data.strip()
    return data


RETRY_STATUS = frozenset({429, 502, 503, 504})


def send_with_retries(send: Callable[[], httpx.Response], method: str, retries: int = 5,
                      backoff: float = 1.0, max_delay: float = 30.0) -> httpx.Response:
    """``send()`` again where the Prefect API says the request may be retried, with backoff.

    Retried: HTTP 503 (Prefect's answer to a database error a client may retry, such as
    SQLite's "database is locked": the failed transaction was rolled back), 429, 502 and 504,
    after ``Retry-After`` when the server gives one; requests that never reached the server
    (connection refused or timed out); and GET/HEAD after a read timeout. A POST that timed
    out is *not* sent again (it may have been carried out). At most ``retries`` more
    attempts, ``backoff * 2**n`` seconds apart (capped at ``max_delay``); the last answer
    (or error) is the caller's.
    """

    def delay(attempt: int, retry_after: str | None = None) -> float:
        try:
            if retry_after:
                return min(max_delay, max(0.0, float(retry_after)))
        except ValueError:
            pass
        return min(max_delay, backoff * 2**attempt)

    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            response = send()
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if last:
                raise
            time.sleep(delay(attempt))
            continue
        except httpx.TimeoutException:
            if last or method.upper() not in ("GET", "HEAD"):
                raise
            time.sleep(delay(attempt))
            continue
        if last or response.status_code not in RETRY_STATUS:
            return response
        retry_after = response.headers.get("Retry-After")
        response.close()
        time.sleep(delay(attempt, retry_after))
    raise AssertionError("unreachable")  # pragma: no cover


class RetryTransport(httpx.BaseTransport):
    """An httpx transport that sends through ``inner`` with :func:`send_with_retries`."""

    def __init__(self, inner: httpx.BaseTransport | None = None, retries: int = 5, backoff: float = 1.0):
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self.retries, self.backoff = retries, backoff

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return send_with_retries(lambda: self.inner.handle_request(request), request.method,
                                 self.retries, self.backoff)

    def close(self) -> None:
        self.inner.close()


class Client:
    """A small synchronous client of the Prefect REST API for tomodenoise runs.

    ``api_url`` defaults to ``$PREFECT_API_URL`` (e.g. ``http://prefect:4200/api``) and ``auth``
    (``"user:pass"``, the server's ``PREFECT_SERVER_API_AUTH_STRING``) to
    ``$PREFECT_API_AUTH_STRING``; it is sent as HTTP basic auth, as Prefect's client does.
    Without an auth string, ``$PREFECT_API_KEY`` (Prefect Cloud) is sent as a bearer token.
    ``transport`` is handed to ``httpx.Client`` (tests use ``httpx.MockTransport``). Requests
    are retried as :func:`send_with_retries` says, ``retries`` times at most with ``backoff``
    (a busy server's 503s and short outages are waited out; ``retries=0`` turns that off).
    """

    def __init__(
        self,
        api_url: str | None = None,
        auth: str | tuple[str, str] | None = None,
        timeout: float = 30,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retries: int = 5,
        backoff: float = 1.0,
    ):
        url = api_url or os.environ.get(ENV_API_URL, "")
        if not url.strip():
            raise ApiError(
                f"no Prefect API URL: pass api_url or set {ENV_API_URL} "
                "(e.g. http://prefect-server:4200/api)"
            )
        self.api_url = url.strip().rstrip("/")
        if auth is None:
            auth = os.environ.get(ENV_AUTH_STRING) or None
        if isinstance(auth, tuple):
            auth = ":".join(auth)
        api_key = api_key if api_key is not None else os.environ.get(ENV_API_KEY) or None
        headers = {"Accept": "application/json", "User-Agent": "tomodenoise-api"}
        if auth:
            headers["Authorization"] = _basic_auth_header(auth)
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.api_url + "/", headers=headers, timeout=timeout, transport=transport
        )
        self.retries, self.backoff = retries, backoff

    # --- plumbing -----------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, json_body: Any = None) -> Any:
        what = f"{method} {self.api_url}/{path.lstrip('/')}"
        try:
            r = send_with_retries(lambda: self._http.request(method, path.lstrip("/"), json=json_body),
                                  method, self.retries, self.backoff)
        except httpx.HTTPError as exc:  # no answer: refused, DNS, timeout, TLS ...
            raise ApiError(f"{what}: no answer from the Prefect API ({type(exc).__name__}: {exc})") from exc
        if r.status_code in (401, 403):
            raise ApiError(
                f"{what}: HTTP {r.status_code} {_detail(r)!r}: the Prefect server refused the credentials; "
                f"set {ENV_AUTH_STRING}='user:pass' to the server's PREFECT_SERVER_API_AUTH_STRING",
                r.status_code,
                _detail(r),
            )
        if r.is_error:
            detail = _detail(r)
            raise ApiError(f"{what}: HTTP {r.status_code}: {detail}", r.status_code, detail)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError as exc:
            raise ApiError(f"{what}: HTTP {r.status_code} but not JSON: {r.text[:200]!r}", r.status_code) from exc

    @staticmethod
    def _scan_path(scan: str | os.PathLike, roots: Sequence[str | os.PathLike] | None) -> str:
        """The scan path to send: confined (and resolved) when input roots apply, else as given."""
        rs = input_roots() if roots is None else [Path(r) for r in roots]
        if rs:
            return str(confine(scan, rs))  # PathNotAllowed outside the roots
        return os.fspath(scan)

    @staticmethod
    def _run_id(run_id: str) -> str:
        try:
            return str(uuid.UUID(str(run_id)))
        except ValueError:
            raise ValueError(f"{run_id!r} is not a flow run id (a UUID)") from None

    # --- the API ------------------------------------------------------------------------------
    def deployment_id(self, deployment: str = DEFAULT_DEPLOYMENT) -> str:
        """The id of ``flow-name/deployment-name``; ApiError (404) when there is none."""
        flow, sep, name = deployment.partition("/")
        if not sep or not flow or not name:
            raise ValueError(f"deployment must be 'flow-name/deployment-name', got {deployment!r}")
        try:
            dep = self._request("GET", f"deployments/name/{quote(flow, safe='')}/{quote(name, safe='')}")
        except ApiError as exc:
            if exc.status_code == 404:
                raise ApiError(f"deployment {deployment!r} not found: {exc}", 404, exc.detail) from exc
            raise
        return dep["id"]

    def start_run(
        self,
        scan: str | os.PathLike,
        overrides: dict[str, Any] | None = None,
        deployment: str = DEFAULT_DEPLOYMENT,
        roots: Sequence[str | os.PathLike] | None = None,
        idempotency_key: str | None = None,
        *,
        config: dict[str, Any] | None = None,
        reference: str | None = None,
    ) -> str:
        """Create a flow run of the pipeline deployment for ``scan``; returns the flow run id.

        The run is SCHEDULED; a worker of the deployment's pool runs it. ``overrides`` are nested
        config overrides (``{"train": {"epochs": 5}}``) applied on the deployment's config
        (or on ``config``, a whole configuration, when given); ``reference`` is a clean volume
        for PSNR/SSIM. Parameters the flow cannot take raise :class:`BadRequest` and nothing is
        sent. With an ``idempotency_key`` a repeated call returns the run made by the first one.
        """
        parameters: dict[str, Any] = {"scan": self._scan_path(scan, roots), "overrides": overrides or {}}
        parameters.update({k: v for k, v in (("config", config), ("reference", reference)) if v is not None})
        body: dict[str, Any] = {"parameters": check_parameters(parameters)}
        dep_id = self.deployment_id(deployment)
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        run = self._request("POST", f"deployments/{dep_id}/create_flow_run", body)
        return run["id"]

    def post_scan_completed(
        self,
        scan: str | os.PathLike,
        overrides: dict[str, Any] | None = None,
        roots: Sequence[str | os.PathLike] | None = None,
    ) -> str:
        """Emit ``tomodenoise.scan.completed`` for ``scan``; returns the event id.

        The pipeline deployment's trigger turns the event into a flow run (parameters from
        ``payload.path`` and ``payload.overrides``). The server accepts events asynchronously:
        the run (and the event in ``/events/filter``) appear a few seconds later. Overrides the
        flow cannot take raise :class:`BadRequest` and nothing is sent.
        """
        path = self._scan_path(scan, roots)
        check_parameters({"scan": path, "overrides": overrides or {}})
        event_id = str(uuid.uuid4())
        event = {
            "id": event_id,
            "occurred": datetime.now(UTC).isoformat(),
            "event": SCAN_COMPLETED_EVENT,
            "resource": {"prefect.resource.id": scan_resource_id(path), "tomodenoise.scan.path": path},
            "related": [],
            "payload": {"path": path, "overrides": overrides or {}},
        }
        self._request("POST", "events", [event])
        return event_id

    def store_of(self, run_id: str) -> str | None:
        """The output folder a run published (its ``store-<scan-id>`` link artifact), or None."""
        body = {
            "artifacts": {
                "flow_run_id": {"any_": [self._run_id(run_id)]},
                "key": {"like_": STORE_ARTIFACT_PREFIX},  # the server matches %like_%
            },
            "sort": "CREATED_DESC",
            "limit": 20,
        }
        for art in self._request("POST", "artifacts/filter", body) or []:
            if (art.get("key") or "").startswith(STORE_ARTIFACT_PREFIX):
                return _link_target(art.get("data"))
        return None

    def get_run(self, run_id: str) -> dict[str, Any]:
        """State, name, parameters and store of a flow run.

        ``state`` is the state type (SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED,
        CRASHED, PAUSED, CANCELLING), ``state_name`` its display name (e.g. Late, Retrying),
        ``store`` the output folder once the run published it (None before), ``quality`` the
        quality check's verdict from the run's ``quality:<status>`` tag (``ok`` or
        ``below_baseline``; None before the report): hold a ``below_baseline`` result back.
        """
        rid = self._run_id(run_id)
        fr = self._request("GET", f"flow_runs/{rid}")
        state = fr.get("state") or {}
        return {
            "id": fr.get("id", rid),
            "name": fr.get("name"),
            "state": state.get("type") or fr.get("state_type"),
            "state_name": state.get("name") or fr.get("state_name"),
            "message": state.get("message"),
            "parameters": fr.get("parameters") or {},
            "deployment_id": fr.get("deployment_id"),
            "start_time": fr.get("start_time"),
            "end_time": fr.get("end_time"),
            "store": self.store_of(rid),
            "quality": next((t.split(":", 1)[1] for t in fr.get("tags") or [] if t.startswith("quality:")), None),
        }

    def wait(self, run_id: str, timeout: float, poll: float = 2) -> dict[str, Any]:
        """:meth:`get_run` once the run is in a final state; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run["state"] in FINAL_STATES:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"flow run {run_id} is still {run['state_name'] or run['state']} after {timeout:g} s"
                )
            time.sleep(min(poll, left))


# --- command line -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tomodenoise.api",
        description="Start and follow tomodenoise runs on a Prefect server "
        f"(${ENV_API_URL}, ${ENV_AUTH_STRING}; scan paths confined to $TOMODENOISE_INPUT_ROOTS when set).",
        epilog="Exit status: 0 done (or not final yet), 1 error, 2 a request the flow cannot take "
        "(nothing sent) or --wait timed out, 3 the run ended FAILED, CRASHED or CANCELLED.",
    )
    ap.add_argument("--api-url", help=f"default: ${ENV_API_URL}")
    ap.add_argument("--timeout", type=float, default=30, help="seconds per HTTP request (default 30)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="create a pipeline run for SCAN; prints its id")
    s.add_argument("scan")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. train.epochs=5")
    s.add_argument("--deployment", default=DEFAULT_DEPLOYMENT, help=f"flow/deployment (default {DEFAULT_DEPLOYMENT})")
    s.add_argument("--idempotency-key", help="a repeated start with the same key returns the same run")
    s.add_argument("--wait", type=float, metavar="S", help="then wait up to S seconds and print the final state")
    e = sub.add_parser("event", help=f"post {SCAN_COMPLETED_EVENT} for SCAN; prints the event id")
    e.add_argument("scan")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. train.epochs=5")
    st = sub.add_parser("status", help="print the state of a run (JSON)")
    st.add_argument("run_id")
    st.add_argument("--wait", type=float, metavar="S", help="wait up to S seconds for a final state")
    args = ap.parse_args(argv)

    try:
        with Client(args.api_url, timeout=args.timeout) as api:
            if args.cmd == "start":
                run_id = api.start_run(args.scan, parse_sets(args.set), deployment=args.deployment,
                                       idempotency_key=args.idempotency_key)
                if args.wait is None:
                    print(run_id)
                    return 0
                run = api.wait(run_id, args.wait)
            elif args.cmd == "event":
                print(api.post_scan_completed(args.scan, parse_sets(args.set)))
                return 0
            else:
                run = api.wait(args.run_id, args.wait) if args.wait is not None else api.get_run(args.run_id)
    except BadRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ApiError, PathNotAllowed, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"timeout: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run, indent=2, default=str))
    return 3 if run["state"] in FINAL_STATES - {"COMPLETED"} else 0  # failed, crashed, cancelled


if __name__ == "__main__":
    raise SystemExit(main())
