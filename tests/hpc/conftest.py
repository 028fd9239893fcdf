"""The HPC tier (``--hpc``): a real one-node SLURM (``scripts/hpc/slurm``) and podman on this
machine. It needs root and Debian's packages; ``.ci/run`` runs it. Without them the tier is
skipped, except with ``CI=true``, where a missing piece fails the tier."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "hpc" / "slurm"


def unavailable(why: str) -> None:
    """Skip, or fail under CI (where the tier must run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"HPC tier under CI: {why}")
    pytest.skip(why)


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
        unavailable(f"scripts/hpc/slurm up failed: {up.stderr.strip()[-500:]}")
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0]
    yield partition.rstrip("*")
    if not running:
        subprocess.run([str(SLURM_SCRIPT), "down"], capture_output=True, timeout=120)
