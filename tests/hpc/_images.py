"""The HPC tier's CPU image, built in the background (``scripts/hpc/podman setup|base|build``):
started by tests/hpc/conftest.py when the tier is collected, waited for by the container tests."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

PODMAN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "hpc" / "podman"


class ImageBuild(threading.Thread):
    """``scripts/hpc/podman setup``, ``base`` and ``build`` in order, in the background; each step
    timed (``times``), the first failure kept (``failure``: the step and its output's end)."""

    STEPS = (("setup", 60), ("base", 600), ("build", 900))

    def __init__(self) -> None:
        super().__init__(daemon=True, name="image-build")
        self.times: dict[str, float] = {}
        self.failure: str | None = None

    def run(self) -> None:
        for step, limit in self.STEPS:
            t0 = time.monotonic()
            try:
                r = subprocess.run([str(PODMAN_SCRIPT), step], capture_output=True, text=True, timeout=limit)
            except subprocess.TimeoutExpired:
                self.failure = f"scripts/hpc/podman {step} took over {limit} s"
                return
            self.times[step] = time.monotonic() - t0
            if r.returncode != 0:
                self.failure = f"scripts/hpc/podman {step} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
                return


BUILD = pytest.StashKey[ImageBuild]()


def image_build(config: pytest.Config) -> ImageBuild:
    """The background build of the tier (started here, and waited for, when none was started)."""
    build = config.stash.get(BUILD, None)
    if build is None:
        build = ImageBuild()
        build.start()
        config.stash[BUILD] = build
    build.join()
    return build
