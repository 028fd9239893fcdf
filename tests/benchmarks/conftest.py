"""The benchmark tier: tests of the experiments in benchmarks/ (a package of the checkout, not
installed). Every test here is marked ``benchmark`` and runs only with ``--benchmarks``
(tests/conftest.py): ``pytest tests/benchmarks --benchmarks``."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the checkout off the path
    sys.path.insert(0, str(REPO))


@pytest.fixture
def tiny_foam() -> dict:
    """``prepare_foam`` keywords of a 32 x 32 generated foam (seconds, not minutes)."""
    from benchmarks.common import FoamGeometry

    return {"phantom": "generate", "geometry": FoamGeometry(n_angles=64, n_det=48, n_rows=32, n_pixels=32),
            "n_spheres": 30}


@pytest.fixture
def tiny_unet():
    """A U-Net small enough to train a few steps in a few seconds."""
    from benchmarks.n2i import NetworkSetup

    return NetworkSetup("unet", {"depth": 1, "base_channels": 4}, patch_size=16, batch_size=4, patches_per_slice=1)
