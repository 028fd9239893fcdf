"""Shared test settings: tiny data, CPU, few threads; the benchmark tier only with ``--benchmarks``,
the HPC tier (a real one-node SLURM and podman: tests/hpc/) only with ``--hpc``."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# No usage telemetry from the test servers (CI has no internet: it would log an ERROR).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--benchmarks", action="store_true", default=False,
                     help="run the benchmark tier too (tests marked `benchmark`: tests/benchmarks/)")
    parser.addoption("--hpc", action="store_true", default=False,
                     help="run the HPC tier (tests/hpc/: a real one-node SLURM and podman containers; "
                          "root and Debian packages, see scripts/hpc/)")
    parser.addoption("--write-bad-input-table", action="store_true", default=False,
                     help="write docs/BAD_INPUT.md from the bad-input cases (scripts/bad_input_table.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/benchmarks/ is marked ``benchmark``, every test in tests/hpc/ ``hpc``;
    each tier runs only when asked (``--benchmarks``, ``--hpc``), the default run skips it."""
    tiers = {"benchmark": (REPO / "tests" / "benchmarks", "--benchmarks"), "hpc": (REPO / "tests" / "hpc", "--hpc")}
    for marker, (folder, option) in tiers.items():
        run = config.getoption(option)
        skip = pytest.mark.skip(reason=f"{marker} tier: run with {option}")
        for item in items:
            if folder in item.path.parents:
                item.add_marker(getattr(pytest.mark, marker))
            if not run and item.get_closest_marker(marker):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Reference data beside the project (absent in a user's clone: such tests skip)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch

    torch.set_num_threads(1)  # tiny tensors: OpenMP spin-waiting on a busy 2-core box costs 10-40x
    yield


@pytest.fixture(autouse=True)
def _restore_logging():
    """``tomodenoise.cli.main`` sets up the process's logging (console, run log): undo it after
    each test, so one test's handlers (and open run logs) never reach the next."""
    import logging

    from tomodenoise import logs, stopping

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = logs.LIBRARIES + logs.CHATTY + ("prefect._internal", "tomodenoise")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level)
             for n in names}
    yield
    stopping.uninstall()
    logging.captureWarnings(False)
    for n, (hs, prop, lvl) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = hs
        lg.propagate, lg.level = prop, lvl
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
    for key in ("TOMODENOISE_RUN_LOG", "TOMODENOISE_VERBOSITY"):
        os.environ.pop(key, None)
