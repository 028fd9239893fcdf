"""A throwaway PostgreSQL server for the tests: ``initdb`` + ``pg_ctl start`` in a temporary folder.

Usage::

    with start_postgres() as pg:          # PostgresMissing when there are no binaries
        start_server(tmp, database_url=pg.url("prefect"))

The binaries are found with ``pg_config --bindir``, under ``/usr/lib/postgresql/*/bin`` (Debian's
``postgresql`` package) or on ``PATH``. The server listens on a free loopback port only (no Unix
socket), trusts local connections, and is stopped (``pg_ctl stop -m immediate`` at the end) and
its folder removed on exit.

``initdb`` refuses to run as root. As root (CI containers) the server runs as the ``postgres``
user when there is one (Debian's package creates it), else as ``nobody``, in a folder that user
owns under the system's temporary directory (pytest's own temporary folders are private to root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PROGRAMS = ("initdb", "pg_ctl", "createdb")


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on this machine."""


@dataclass
class Postgres:
    port: int
    user: str  # the database superuser (the OS user that ran initdb)
    data: Path
    log: Path
    bindir: Path

    def url(self, database: str = "postgres", driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def skip_or_fail(reason: str) -> None:
    """Without PostgreSQL: skip the test on a laptop, fail it on CI (``CI=true``), which must run it."""
    import pytest

    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true but PostgreSQL cannot run here: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
                      reverse=True)
    candidates += [Path(p) for p in versions]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for d in candidates:
        if all((d / p).is_file() and os.access(d / p, os.X_OK) for p in PROGRAMS):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresMissing("running as root and there is neither a 'postgres' nor a 'nobody' user to run "
                          "PostgreSQL as (initdb refuses root)")


@contextlib.contextmanager
def start_postgres(databases: tuple[str, ...] = ("prefect",), timeout: float = 60) -> Iterator[Postgres]:
    """Initialise, start and yield a PostgreSQL server with ``databases`` created; remove it on exit.

    Raises :class:`PostgresMissing` without the binaries, ``RuntimeError`` (with the server's
    log) when it does not start.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresMissing("PostgreSQL server binaries (initdb, pg_ctl) not found: looked at `pg_config "
                              "--bindir`, /usr/lib/postgresql/*/bin and PATH (Debian: apt-get install postgresql)")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="tomodenoise-pg-"))
    os.chmod(root, 0o755)
    user = as_user or pwd.getpwuid(os.geteuid()).pw_name
    if as_user:
        ent = pwd.getpwnam(as_user)
        os.chown(root, ent.pw_uid, ent.pw_gid)
    data, log = root / "data", root / "server.log"
    port = _free_port()
    # No HOME/PG* from the caller: a PGHOST or a service file must not send us elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", HOME=str(root))
    kw = dict(env=env, cwd=root, user=as_user, capture_output=True, text=True, timeout=120)
    pg = Postgres(port=port, user=user, data=data, log=log, bindir=bindir)
    started = False

    def run(*cmd: str) -> None:
        r = subprocess.run([str(bindir / cmd[0]), *cmd[1:]], **kw)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}\n"
                               f"server log:\n{pg.log_tail()}")

    try:
        run("initdb", "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-instructions")
        # fsync off and a larger pool of connections: a test server, many Prefect connections.
        opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off " \
               f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", str(int(timeout)), "start")
        started = True
        for db in databases:
            run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, db)
        t_end = time.monotonic() + timeout
        while True:  # pg_ctl -w waited already; make sure TCP answers too
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    break
            except OSError:
                if time.monotonic() > t_end:
                    raise RuntimeError(f"PostgreSQL not listening on port {port}:\n{pg.log_tail()}") from None
                time.sleep(0.2)
        yield pg
    finally:
        if started:
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           env=env, cwd=root, user=as_user, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
