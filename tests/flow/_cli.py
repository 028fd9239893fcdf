"""Helpers for tests that run ``tomodenoise`` as a user does: a child process, its own console."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

SERVER_MARK = "prefect.server.api.server:create_app"


def cli_env(tmp: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of a user's shell: no Prefect API unless given (the run embeds its own
    server, with its database under ``tmp``), the project on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TOMODENOISE_", "DASK_"))}
    env["PREFECT_HOME"] = str(tmp / "prefect-home")
    env["PYTHONUNBUFFERED"] = "1"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start(args: list[str], tmp: Path, api_url: str | None = None, name: str = "cli") -> subprocess.Popen:
    """``tomodenoise ARGS`` with stdout and stderr in ``tmp/<name>.out`` / ``.err``."""
    return subprocess.Popen([sys.executable, "-m", "tomodenoise.cli", *args], env=cli_env(tmp, api_url),
                            stdout=(tmp / f"{name}.out").open("w"), stderr=(tmp / f"{name}.err").open("w"),
                            start_new_session=True)


def console(tmp: Path, name: str = "cli") -> str:
    return (tmp / f"{name}.out").read_text() + (tmp / f"{name}.err").read_text()


def descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def prefect_servers(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The Prefect API servers among ``procs`` (embedded or ephemeral: uvicorn on Prefect's app)."""
    return [p for p in procs if SERVER_MARK in cmdline(p)]


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process in ``procs`` has ended; returns those still alive."""
    t_end = time.monotonic() + timeout
    alive = procs
    while alive and time.monotonic() < t_end:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive
