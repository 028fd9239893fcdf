"""Resume: kill the flow (or a Dask worker) in the middle of reconstruction and run again.

The run again must finish only the chunks that were missing (the written ones keep their
completion markers, untouched) and give the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.simulate.scan import simulate_foam_scan

N_CHUNKS = 16  # 4 splits x 4 z-slabs of 2 slices


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume-scan")
    return simulate_foam_scan(d / "foam.h5", size=32, n_angles=48, n_slices=8, i0=200.0, seed=3, n_spheres=60)["scan"]


def _cfg(scan: Path, out: Path, cluster: str, n_workers: int) -> RunConfig:
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out)
    cfg.recon.algorithm = "sirt"
    cfg.recon.iterations = 2500  # slow enough (~0.6 s a chunk) to be interrupted half-way
    cfg.recon.z_chunk = 2
    cfg.compute.cluster = cluster
    cfg.compute.n_workers = n_workers
    cfg.model = ModelConfig(name="msd", params={"depth": 2, "width": 1})
    cfg.train.epochs = 1
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.output.previews = 0
    return cfg


def _markers(cfg: RunConfig) -> dict[str, int]:
    d = pipeline.store_for(cfg).root / "progress"
    return {p.name: p.stat().st_mtime_ns for p in d.glob("reconstruct-*/*.done")}


def _start_run(cfg: RunConfig, tmp: Path) -> subprocess.Popen:
    """``tomodenoise run`` in its own process group, against the session's test server."""
    from prefect.settings import PREFECT_API_URL

    cfg_file = cfg.save(tmp / "run.yaml")
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    return subprocess.Popen(
        [sys.executable, "-m", "tomodenoise.cli", "run", cfg.input.path, "--out", cfg.output.root, "-c", str(cfg_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "run.log").open("w"), start_new_session=True,
    )


def _wait_for_markers(proc: subprocess.Popen, cfg: RunConfig, n: int, timeout: float = 240) -> None:
    t_end = time.monotonic() + timeout
    while len(_markers(cfg)) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {n} chunks were written")
        if time.monotonic() > t_end:
            proc.kill()
            pytest.fail(f"fewer than {n} chunks written after {timeout} s")
        time.sleep(0.05)


def _uninterrupted_recon(cfg: RunConfig, out: Path) -> np.ndarray:
    ref = cfg.model_copy(deep=True)
    ref.output.root = str(out)
    store = pipeline.ingest(ref)
    pipeline.reconstruct(store, ref, progress=False)
    return np.asarray(store.array("recon")[:])


def test_killed_flow_resumes_remaining_chunks_with_identical_result(scan, tmp_path):
    from flows.pipeline import pipeline_flow
    from tomodenoise.lock import is_locked

    cfg = _cfg(scan, tmp_path / "out", cluster="threads", n_workers=1)
    proc = _start_run(cfg, tmp_path)
    _wait_for_markers(proc, cfg, 3)
    os.killpg(proc.pid, signal.SIGKILL)  # the flow and everything it started, mid-stage
    proc.wait(timeout=30)
    before = _markers(cfg)
    store = ScanStore(pipeline.store_for(cfg).root)
    assert 3 <= len(before) < N_CHUNKS, "the kill should land in the middle of the reconstruction"
    assert not store.stage_done("reconstruct")
    # The dead run's lock died with it: nobody has to free it.
    assert not is_locked(pipeline.store_for(cfg).root)

    state = pipeline_flow(config=cfg, return_state=True)
    assert state.is_completed(), state
    after = _markers(cfg)
    assert len(after) == N_CHUNKS
    # the chunks written before the kill were not computed again
    assert {k: after[k] for k in before} == before
    assert store.stage_info("reconstruct")["chunks"] == N_CHUNKS
    np.testing.assert_array_equal(np.asarray(store.array("recon")[:]), _uninterrupted_recon(cfg, tmp_path / "ref"))


def test_killed_dask_worker_is_replaced_and_result_identical(scan, tmp_path):
    psutil = pytest.importorskip("psutil")
    cfg = _cfg(scan, tmp_path / "out", cluster="local", n_workers=2)
    proc = _start_run(cfg, tmp_path)
    _wait_for_markers(proc, cfg, 2)
    me = psutil.Process(proc.pid)
    # The nannies live in the flow's process; each Dask worker is a process it spawned
    # (multiprocessing "spawn_main"), unlike multiprocessing's resource tracker.
    workers = [p for p in me.children(recursive=True)
               if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]
    assert len(workers) == 2, [" ".join(p.cmdline()) for p in me.children(recursive=True)]
    at_kill = len(_markers(cfg))
    workers[0].kill()
    workers[0].wait(timeout=10)
    assert not workers[0].is_running()
    assert at_kill < N_CHUNKS, "the worker should die while chunks remain"
    try:
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 0, (tmp_path / "run.log").read_text()[-3000:]
    store = ScanStore(pipeline.store_for(cfg).root)
    assert store.stage_done("reconstruct") and store.stage_done("report")
    assert len(_markers(cfg)) == N_CHUNKS
    np.testing.assert_array_equal(np.asarray(store.array("recon")[:]), _uninterrupted_recon(cfg, tmp_path / "ref"))
