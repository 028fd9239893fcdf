"""The HPC tier's helpers: :func:`unavailable` (skip, or fail under CI), and the CPU image built
in the background (``scripts/hpc/podman setup|base|build``): started by tests/hpc/conftest.py
when the tier is collected, waited for by the container tests."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

PODMAN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "hpc" / "podman"


def unavailable(why: str) -> None:
    """Skip, or fail under CI (where the tier must run)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"HPC tier under CI: {why}")
    pytest.skip(why)


class ImageBuild(threading.Thread):
    """``scripts/hpc/podman setup``, ``base`` and ``build`` in order, in the background; each step
    timed (``times``), the first failure kept (``failure``: the step and its output's end)."""

    STEPS = (("setup", 60), ("base", 600), ("build", 900))

    def __init__(self) -> None:
        super().__init__(daemon=True, name="image-build")
        self.times: dict[str, float] = {}
        self.failure: str | None = None
        self.proc: subprocess.Popen | None = None

    def stop(self) -> None:
        """End a step still running (the session ends early: no podman build left behind)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    def run(self) -> None:
        for step, limit in self.STEPS:
            t0 = time.monotonic()
            # its own session: on a timeout podman build / mmdebstrap go too, not only the script
            proc = self.proc = subprocess.Popen([str(PODMAN_SCRIPT), step], stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                self.failure = f"scripts/hpc/podman {step} took over {limit} s"
                return
            r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
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
