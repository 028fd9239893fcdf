"""One real Prefect test server (temporary SQLite database) for the whole test session."""

import pytest

# Import Prefect (which sets up its logging handlers) at collection time, while sys.stderr is
# pytest's session-long capture stream. Imported first inside a test that uses capsys, its
# console handler would bind to that test's stream, which is closed when the test ends, and
# every later flow run would fail while logging ("I/O operation on closed file").
import prefect  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
