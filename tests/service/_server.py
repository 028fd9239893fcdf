"""A real ``prefect server start`` subprocess on loopback (SQLite under a temporary home, or
the PostgreSQL database given as ``database_url``).

Usage::

    with start_server(tmp_dir, auth="user:pass") as server:
        subprocess.run([...], env=server.subprocess_env())   # talks to this server only
        httpx.get(f"{server.url}/health")

``deployed_worker(server, tmp, roots)`` applies ``deploy/prefect.yaml`` to it and runs a
process worker on the ``tomodenoise`` pool (the service tests, and tests/hpc's watcher on SLURM).

``server.env`` holds only the variables that point a client at this server
(``PREFECT_API_URL``, ``PREFECT_HOME``, ``PREFECT_API_AUTH_STRING`` with auth);
``server.subprocess_env()`` is ``os.environ`` without any other ``PREFECT_*`` variable plus
those, so a child process cannot pick up a profile or the in-process test harness.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

PREFECT = str(Path(sys.executable).with_name("prefect"))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str  # http://127.0.0.1:<port>/api
    ui_url: str  # http://127.0.0.1:<port>
    auth: str | None  # "user:pass" when the API asks for basic auth
    home: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # for subprocesses that talk to it

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` without other ``PREFECT_*`` settings, plus ``env`` and ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(self.env, **extra)
        return env

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client on the API (``base_url`` = ``url``; basic auth when set)."""
        if self.auth:
            user, _, password = self.auth.partition(":")
            kwargs.setdefault("auth", (user, password))
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, **kwargs)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_setting(name: str) -> bool:
    try:
        import prefect.settings

        return hasattr(prefect.settings, name)
    except Exception:
        return False


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate the server's process group (it was started in a new session), then kill it."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def start_server(tmp_dir: Path, auth: str | None = None, timeout: float = 120,
                 database_url: str | None = None, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start ``prefect server start`` on a free loopback port; wait for ``/api/health``.

    ``auth`` ("user:pass") turns on ``PREFECT_SERVER_API_AUTH_STRING``. ``database_url``
    (e.g. ``postgresql+asyncpg://user@127.0.0.1:5432/prefect``) becomes
    ``PREFECT_API_DATABASE_CONNECTION_URL`` (default: SQLite in the temporary home);
    ``extra_env`` adds server settings. Raises
    ``RuntimeError`` with the end of the server's log when it exits or is not healthy within
    ``timeout`` seconds. Stops it (terminate, then kill) on exit.
    """
    tmp_dir = Path(tmp_dir)
    home = tmp_dir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # The UI asks /ui-settings for the API's address; without this it says port 4200.
    # PREFECT_API_LOG_RETRYABLE_ERRORS: the server logs the database errors it answers 503 to.
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_LOG_RETRYABLE_ERRORS="true",
               PREFECT_SERVER_UI_API_URL=f"{base}/api")
    if _has_setting("PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"):
        env["PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT"] = "false"
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    env.update(extra_env or {})
    log = tmp_dir / "server.log"
    client_env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"{base}/api"}
    if auth:
        client_env["PREFECT_API_AUTH_STRING"] = auth
    server = Server(url=f"{base}/api", ui_url=base, auth=auth, home=home, log=log, env=client_env)
    with log.open("w") as log_file:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            t_end = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"prefect server exited with {proc.returncode}; its log ({log}):\n"
                                       f"{server.log_tail()}")
                try:
                    if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > t_end:
                    raise RuntimeError(f"prefect server not healthy at {base}/api/health after {timeout:.0f} s; "
                                       f"its log ({log}):\n{server.log_tail()}")
                time.sleep(0.5)
            yield server
        finally:
            _stop(proc)


@contextlib.contextmanager
def deployed_worker(server: Server, tmp: Path, raw: Path, out: Path, limit: int = 2,
                    extra_env: dict[str, str] | None = None) -> Iterator[Path]:
    """The deployments of ``deploy/prefect.yaml`` on ``server`` (input root ``raw``, output root
    ``out``) and a ``prefect worker start --pool tomodenoise`` process (at most ``limit`` runs at
    a time) until the block ends; yields the worker's log file."""
    env = dict(os.environ, **server.env, TOMODENOISE_REPO=str(REPO), TOMODENOISE_INPUT_ROOTS=str(raw),
               TOMODENOISE_OUTPUT_ROOT=str(out), PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_WORKER_PREFETCH_SECONDS="1", **(extra_env or {}))
    env.pop("PREFECT_PROFILES_PATH", None)

    def prefect(*args: str) -> str:
        r = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"prefect {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    prefect("work-pool", "create", "tomodenoise", "--type", "process")
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")
    log_path = tmp / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "tomodenoise", "--limit", str(limit)],
                                  cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield log_path
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
