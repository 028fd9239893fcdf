"""What a ``tomodenoise run`` / ``demo`` process needs around its flow: one Prefect server.

:func:`prefect_api` yields the API the run reports to:

- ``PREFECT_API_URL`` when it is set (a persistent server, or a test server): nothing is started;
- otherwise one embedded server, started here as a child process (Prefect's ephemeral API app
  under uvicorn, no UI, no telemetry) and stopped when the block ends.

Either way the URL is put in ``os.environ`` so that every process this one starts (local Dask
workers, torchrun ranks) reports to the same server instead of starting one of its own: with
Prefect's ephemeral mode each worker process used to start its own server on the same SQLite
file, and they locked each other out ("database is locked").

The embedded server cannot outlive this process: it gets ``SIGKILL`` when its parent dies
(Linux ``PR_SET_PDEATHSIG``), and it runs in its own session, so a terminal's Ctrl-C or a
``kill`` of this process group reaches this process first, which then marks its run and
stops the server itself. Its output goes to the current run log.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

log = logging.getLogger("tomodenoise.server")

# Settings of the embedded server: its API only, no UI, no telemetry, no chatter.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}
# Also for every client process: Prefect's client sends no usage telemetry.
CLIENT_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _child_setup(parent: int, prctl) -> None:  # pragma: no cover - runs between fork and exec
    """In the server's process before exec: die with the parent, leave the terminal's group.

    Only async-signal-safe work here (``prctl`` was looked up in the parent)."""
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    os.setsid()  # a terminal's Ctrl-C goes to the run, which then stops the server in order


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pump(stream, logger: logging.Logger, tail: collections.deque) -> None:
    """Copy the server's output, line by line, into the log (the run log; the console with -v)."""
    for line in iter(stream.readline, ""):
        line = line.rstrip()
        if line:
            tail.append(line)
            logger.info("%s", line)
    stream.close()


class EmbeddedServer:
    """Prefect's API served by uvicorn in a child process of this one."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 90.0) -> None:
        import prefect

        env = {**os.environ, **SERVER_ENV}
        env.pop("PREFECT_API_URL", None)
        linux = sys.platform.startswith("linux")
        setup = functools.partial(_child_setup, os.getpid(), _prctl() if linux else None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", preexec_fn=setup if linux else None, start_new_session=not linux,
        )
        tail: collections.deque = collections.deque(maxlen=20)
        threading.Thread(target=_pump, args=(self.proc.stdout, logging.getLogger("prefect.server.embedded"), tail),
                         name="prefect-server-log", daemon=True).start()
        t_end = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < t_end:
                if self.proc.poll() is not None:
                    time.sleep(0.2)  # the last lines
                    raise RuntimeError(f"the embedded Prefect server exited with status {self.proc.returncode} "
                                       "while starting; its last lines: " + " | ".join(tail))
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        time.sleep(0.3)
                        if self.proc.poll() is None:  # ours answered, not another process on the port
                            return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the embedded Prefect server did not answer within {timeout:.0f} s; "
                           "set PREFECT_API_URL to a running server instead")

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM (uvicorn shuts down in order), then SIGKILL after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ServerUnreachable(ValueError):
    """``PREFECT_API_URL`` names a server that does not answer (a setting to fix: exit status 2)."""


def check_server(url: str, timeout: float = 10.0) -> None:
    """:class:`ServerUnreachable`, in one sentence with the URL and the remedy, unless ``url``'s
    ``/health`` answers."""
    try:
        with httpx.Client(timeout=timeout) as client:
            answer = client.get(f"{url.rstrip('/')}/health")
        if answer.status_code == 200:
            return
        why = f"it answered {answer.status_code} to /health"
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    raise ServerUnreachable(f"PREFECT_API_URL={url} does not answer ({why}): start that server, correct the URL, or "
                            "unset PREFECT_API_URL to run with an embedded server")


def configured_api_url() -> str | None:
    """The API URL set for this process (environment, Prefect profile or test harness), if any."""
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


@contextlib.contextmanager
def prefect_api() -> Iterator[tuple[str, str]]:
    """Yield ``(api_url, kind)``: kind ``"configured"`` (PREFECT_API_URL) or ``"embedded"``.

    The URL is in ``os.environ`` and in Prefect's settings for the duration of the block.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", *CLIENT_ENV)}
    os.environ.update(CLIENT_ENV)
    server: EmbeddedServer | None = None
    url = configured_api_url()
    kind = "configured"
    fast = False
    try:
        if url is None:
            server = EmbeddedServer()
            server.start()
            url, kind = server.api_url, "embedded"
        else:
            check_server(url)
        os.environ["PREFECT_API_URL"] = url
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url, kind
            except BaseException as e:  # stopping on a signal: a short cleanup (a deadline runs)
                fast = not isinstance(e, Exception)
                raise
    finally:
        _drain_clients(1.0 if fast else 5.0)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if server is not None:
            server.stop(2.0 if fast else 8.0)
            log.info("stopped the embedded Prefect server at %s", server.api_url)


def _drain_clients(timeout: float = 5.0) -> None:
    """Send the logs and events still queued in this process before the server goes away."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
        EventsWorker.drain_all(timeout=timeout)
    except Exception as exc:  # pragma: no cover - best effort at the end of a run
        log.debug("could not drain Prefect's log and event workers: %s", exc)


def describe(url: str, kind: str) -> str:
    """The console's first line: which server the run reports to."""
    if kind == "embedded":
        return (f"Prefect: embedded server at {url} for this run, stopped at the end "
                "(set PREFECT_API_URL to report to a persistent server)")
    return f"Prefect: reporting to {url} (PREFECT_API_URL)"
