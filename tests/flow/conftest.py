"""One real Prefect test server (temporary SQLite database) for the whole test session."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
