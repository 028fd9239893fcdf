"""Crashes and stops as they happen: SIGKILL of the CLI mid-stage, SIGTERM mid-training.

A killed run leaves no process behind (its embedded server and Dask workers die with it) and
no lock: the same command run again resumes at once. SIGTERM (SLURM's time limit, ``scancel``,
``timeout``) stops the run within 10 s, with the training's checkpoint saved, the lock
released and the flow run marked Cancelled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import _cli
import pytest

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.lock import is_locked
from tomodenoise.simulate.scan import simulate_foam_scan

N_CHUNKS = 16  # 4 splits x 4 z-slabs of 2 slices


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals-scan")
    return simulate_foam_scan(d / "foam.h5", size=32, n_angles=48, n_slices=8, i0=200.0, seed=5, n_spheres=60)["scan"]


def _cfg(scan: Path, out: Path, tmp: Path, **train) -> tuple[RunConfig, Path]:
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out)
    cfg.recon.algorithm = "sirt"
    cfg.recon.iterations = 2500  # ~0.6 s a chunk: slow enough to be interrupted half-way
    cfg.recon.z_chunk = 2
    cfg.compute.cluster = "local"
    cfg.compute.n_workers = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 2, "width": 1})
    cfg.train.epochs = 1
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.output.previews = 0
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg, cfg.save(tmp / "run.yaml")


def _markers(cfg: RunConfig) -> dict[str, int]:
    d = pipeline.store_for(cfg).root / "progress"
    return {p.name: p.stat().st_mtime_ns for p in d.glob("reconstruct-*/*.done")}


def _wait(cond, proc, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > t_end:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.05)


def _args(cfg: RunConfig, cfg_file: Path) -> list[str]:
    return ["run", cfg.input.path, "--out", cfg.output.root, "-c", str(cfg_file)]


@pytest.mark.slow
def test_a_killed_run_leaves_no_process_and_the_rerun_resumes_within_a_minute(scan, tmp_path):
    cfg, cfg_file = _cfg(scan, tmp_path / "out", tmp_path)
    proc = _cli.start(_args(cfg, cfg_file), tmp_path, name="first")
    _wait(lambda: len(_markers(cfg)) >= 3, proc, 240, "3 reconstructed chunks")
    children = _cli.descendants(proc)
    assert _cli.prefect_servers(children), "the run should have its embedded server"
    os.kill(proc.pid, signal.SIGKILL)  # the CLI only: what it started must die with it
    proc.wait(timeout=10)
    left = _cli.wait_gone(children, 15)
    assert left == [], [_cli.cmdline(p) for p in left]
    before = _markers(cfg)
    assert 3 <= len(before) < N_CHUNKS
    assert not is_locked(pipeline.store_for(cfg).root)

    t0 = time.monotonic()
    again = _cli.start(_args(cfg, cfg_file), tmp_path, name="again")
    _wait(lambda: len(_markers(cfg)) > len(before), again, 60, "new chunk within a minute of the rerun")
    resumed_after = time.monotonic() - t0
    assert again.wait(timeout=300) == 0, _cli.console(tmp_path, "again")[-3000:]
    after = _markers(cfg)
    assert len(after) == N_CHUNKS and {k: after[k] for k in before} == before  # not computed again
    text = _cli.console(tmp_path, "again")
    assert "being written by" not in text and "Traceback" not in text, text
    print(f"rerun wrote its first chunk {resumed_after:.1f} s after it started")


@pytest.mark.slow
def test_sigterm_mid_training_stops_within_10_s_with_a_checkpoint_and_a_cancelled_run(scan, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    cfg, cfg_file = _cfg(scan, tmp_path / "out", tmp_path, epochs=100000, max_minutes=10.0, early_stopping=0)
    cfg.compute.cluster = "threads"
    cfg_file = cfg.save(cfg_file)
    proc = _cli.start(_args(cfg, cfg_file), tmp_path, api_url=PREFECT_API_URL.value(), name="term")
    last = pipeline.store_for(cfg).root / "model" / "last.pt"
    _wait(last.exists, proc, 240, "first epoch's checkpoint")
    time.sleep(1.0)
    children = _cli.descendants(proc)
    t_term = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped_after = time.time() - t_term
    text = _cli.console(tmp_path, "term")
    assert rc == 143, text[-3000:]
    assert stopped_after < 10.0, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    first = (tmp_path / "term.err").read_text().splitlines()[0]
    assert first == f"Prefect: reporting to {PREFECT_API_URL.value()} (PREFECT_API_URL)"  # no server of its own
    assert _cli.prefect_servers(children) == []
    assert last.stat().st_mtime >= t_term - 0.5, "the checkpoint was not saved on SIGTERM"
    assert not is_locked(pipeline.store_for(cfg).root)
    assert _cli.wait_gone(children, 5) == []
    run_log = (pipeline.store_for(cfg).root / "report" / "run.log").read_text()
    assert "training interrupted in epoch" in run_log

    async def root_state():
        async with get_client() as client:
            runs = [r for r in await client.read_flow_runs(limit=200)
                    if r.parent_task_run_id is None
                    and (r.parameters.get("config") or {}).get("output", {}).get("root") == cfg.output.root]
            return [r.state.type.value for r in runs]

    assert asyncio.run(root_state()) == ["CANCELLED"]
    print(f"stopped {stopped_after:.1f} s after SIGTERM")


@pytest.mark.slow
def test_sigterm_mid_reconstruction_on_dask_with_the_embedded_server_stops_within_10_s(scan, tmp_path):
    cfg, cfg_file = _cfg(scan, tmp_path / "out", tmp_path)
    proc = _cli.start(_args(cfg, cfg_file), tmp_path, name="recon")
    _wait(lambda: len(_markers(cfg)) >= 3, proc, 240, "3 reconstructed chunks")
    children = _cli.descendants(proc)
    assert _cli.prefect_servers(children)
    t_term = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped_after = time.time() - t_term
    text = _cli.console(tmp_path, "recon")
    assert rc == 143, text[-3000:]
    assert stopped_after < 10.0, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    left = _cli.wait_gone(children, 10)
    assert left == [], [_cli.cmdline(p) for p in left]
    assert not is_locked(pipeline.store_for(cfg).root)
    assert len(_markers(cfg)) < N_CHUNKS  # stopped mid-stage; what was written stays for the rerun
    print(f"stopped {stopped_after:.1f} s after SIGTERM")
