"""The store lock: one run per store, released by the kernel when its holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tomodenoise.lock import StoreLocked, holder, is_locked, store_lock

HOLD = """
import sys, time
from tomodenoise.lock import store_lock
with store_lock(sys.argv[1], note="the other run", heartbeat_s=0.2):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder_process(root):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_is_refused_or_waits_and_the_lock_dies_with_its_holder(tmp_path):
    root = tmp_path / "scan"
    other = _holder_process(root)
    try:
        assert is_locked(root)
        info = holder(root)
        assert info["pid"] == other.pid and info["note"] == "the other run"
        first_beat = info["heartbeat"]
        with pytest.raises(StoreLocked, match=f"pid {other.pid}.*try again"):
            with store_lock(root, wait=False):
                pass
        told = []
        t0 = time.monotonic()

        def kill_soon(msg):
            told.append(msg)
            os.kill(other.pid, signal.SIGKILL)  # the holder dies while we wait

        time.sleep(1.2)
        assert holder(root)["heartbeat"] > first_beat  # rewritten while it lives (ISO seconds)
        with store_lock(root, on_wait=kill_soon, poll_s=0.05):
            assert holder(root)["pid"] == os.getpid()
        assert len(told) == 1 and "waiting" in told[0] and time.monotonic() - t0 < 10
    finally:
        other.kill()
        other.wait()
    assert not is_locked(root) and holder(root) is None  # released, record cleared
