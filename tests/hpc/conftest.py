"""The HPC tier (``--hpc``): a real one-node SLURM (``scripts/hpc/slurm``) and podman on this
machine. It needs root and Debian's packages; ``.ci/run`` runs it. Without them the tier is
skipped, except with ``CI=true``, where a missing piece fails the tier.

The CPU image (``scripts/hpc/podman setup|base|build``, about 4 minutes on 2 cores) is built in
the background from the start of the tier while the SLURM tests run (they mostly wait on
SLURM and on short runs), and the container tests run last: together that keeps the tier
within its 10 minutes in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _images import BUILD, PODMAN_SCRIPT, ImageBuild, unavailable

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "hpc" / "slurm"
CONTAINER_TESTS = "test_container.py"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A build still running when the session ends (a failure with -x, Ctrl-C) is stopped."""
    build = session.config.stash.get(BUILD, None)
    if build is not None:
        build.stop()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """One Prefect server for the tier's runs that need not test the embedded one (each
    ``tomodenoise run`` without ``PREFECT_API_URL`` starts its own: 10-20 s here)."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "service"))
    from _server import start_server

    with start_server(tmp_path_factory.mktemp("hpc-prefect")) as server:
        yield server.url


@pytest.fixture(scope="session")
def slurm() -> str:
    """A running one-node SLURM (started here when it is not running, and stopped after the
    session if this fixture started it). Returns the default partition's name."""
    if os.geteuid() != 0:
        unavailable("the one-node SLURM needs root")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        unavailable("no slurmctld and no apt-get to install it")
    running = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0
    up = subprocess.run([str(SLURM_SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        if not running:  # daemons it may have started before the node failed to come up
            subprocess.run([str(SLURM_SCRIPT), "down"], capture_output=True, timeout=120)
        unavailable(f"scripts/hpc/slurm up failed: {up.stderr.strip()[-500:]}")
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0]
    yield partition.rstrip("*")
    if not running:
        subprocess.run([str(SLURM_SCRIPT), "down"], capture_output=True, timeout=120)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--hpc``: the container tests last, and the image's build started now (after
    ``scripts/hpc/podman install``, so that apt is not run twice at once with the SLURM fixture's)."""
    if not config.getoption("--hpc"):
        return
    containers = [item for item in items if item.path.name == CONTAINER_TESTS and item.path.parent == Path(__file__).parent]
    if not containers:
        return
    items[:] = [item for item in items if item not in containers] + containers
    if config.option.collectonly or os.geteuid() != 0 or not (shutil.which("podman") or shutil.which("apt-get")):
        return  # the container module's fixture says why (skip, or fail under CI)
    if subprocess.run([str(PODMAN_SCRIPT), "install"], capture_output=True, timeout=900).returncode != 0:
        return  # the fixture runs it again and shows its output
    build = ImageBuild()
    build.start()
    config.stash[BUILD] = build
