"""A real Prefect server (``prefect server start`` subprocess, SQLite) for the service tests.

Unlike ``tests/flow`` (an in-process ``prefect_test_harness``), everything here talks to a
separate server process: give subprocesses ``prefect_server.subprocess_env()`` and wrap
in-process Prefect calls in ``prefect_server_settings`` so they reach this server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from _server import ...` in any import mode

from _server import Server, start_server  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Server:
    """One real Prefect server without auth for the session."""
    with start_server(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture()
def prefect_server_settings(prefect_server):
    """In-process Prefect calls (artifacts, clients) go to ``prefect_server`` in this test."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: prefect_server.url}
    if prefect_server.auth:
        updates[PREFECT_API_AUTH_STRING] = prefect_server.auth
    with temporary_settings(updates=updates):
        yield prefect_server


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of our own for the session (``_postgres.start_postgres``).

    Skipped when the server binaries are missing, except with ``CI=true``: the CI machine must
    run the PostgreSQL tests (``.ci/run`` installs Debian's ``postgresql``), so there it fails.
    """
    from _postgres import PostgresMissing, skip_or_fail, start_postgres

    try:
        ctx = start_postgres()
        pg = ctx.__enter__()
    except PostgresMissing as exc:
        skip_or_fail(str(exc))
    try:
        yield pg
    finally:
        ctx.__exit__(None, None, None)
