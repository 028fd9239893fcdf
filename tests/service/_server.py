"""A real ``prefect server start`` subprocess on loopback (SQLite under a temporary home)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

PREFECT = str(Path(sys.executable).with_name("prefect"))


@dataclass
class Server:
    url: str  # .../api
    ui_url: str
    auth: str | None
    home: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # for subprocesses that talk to it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_server(tmp_dir: Path, auth: str | None = None, timeout: float = 120) -> Iterator[Server]:
    tmp_dir = Path(tmp_dir)
    home = tmp_dir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false")
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    log = tmp_dir / "server.log"
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    client_env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"{base}/api"}
    if auth:
        client_env["PREFECT_API_AUTH_STRING"] = auth
    server = Server(url=f"{base}/api", ui_url=base, auth=auth, home=home, log=log, env=client_env)
    try:
        t_end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > t_end:
                raise RuntimeError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
