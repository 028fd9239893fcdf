"""The denoise stage as a flow: shards on 2 Dask workers equal one process, and resume."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.io.store import ScanStore
from tomodenoise.simulate.scan import simulate_foam_scan

N_CHUNKS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("denoise-flow")
    scan = simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=6, i0=200.0, seed=5, n_spheres=40)["scan"]
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(d / "out")
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs, cfg.train.patch_size, cfg.train.progress = 1, 16, False
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.compute.cluster, cfg.compute.n_workers = "local", 2  # 3 chunks, 3 tasks per worker: 3 shards
    cfg.output.previews = 0
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    pipeline.train(store, cfg)
    _randomise_weights(store.model_dir / "best.pt")
    return store, cfg


def _randomise_weights(checkpoint) -> None:
    """Random weights everywhere (a briefly trained MS-D still has a near-zero output layer, which
    would hide differences in the last bits)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for v in ckpt["state_dict"].values():
        if v.is_floating_point():
            v.copy_(torch.randn(v.shape, generator=gen) * 0.2)
    torch.save(ckpt, checkpoint)


def _copy(store: ScanStore, dst) -> ScanStore:
    shutil.copytree(store.root, dst)
    return ScanStore(dst)


def _markers(store: ScanStore) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (store.root / "progress").glob("denoise-*/*.done")}


def _task_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])))
        return [r.name for r in runs]

    return asyncio.run(read())


def test_sharded_flow_on_two_workers_equals_one_process_and_resumes(trained, tmp_path):
    from flows.pipeline import PrefectExecutor
    from tomodenoise.pipeline.stages import DENOISE, Context

    store, cfg = trained
    one = _copy(store, tmp_path / "one")
    pipeline.denoise(one, cfg)
    expected = np.asarray(one.array("denoised")[:])

    flow_store = _copy(store, tmp_path / "flow")

    def run(cfg, root, return_state):
        with PrefectExecutor(cfg) as executor:  # one cluster per call, as in a run
            return executor.stage(DENOISE, type(flow_store)(root), cfg,
                                  Context(), return_state=return_state)

    state = run(cfg, str(flow_store.root), return_state=True)
    assert state.is_completed(), state
    np.testing.assert_array_equal(np.asarray(flow_store.array("denoised")[:]), expected)
    assert flow_store.stage_done("denoise") and flow_store.stage_info("denoise")["chunks"] == N_CHUNKS
    names = _task_names(state.state_details.flow_run_id)
    assert sorted(n for n in names if n.startswith("denoise-t")) == ["denoise-t0-c0-z0", "denoise-t0-c0-z2",
                                                                       "denoise-t0-c0-z4"]
    # every worker process loaded the network once, whatever number of shards it ran
    records = [json.loads(p.read_text()) for p in (flow_store.root / "progress").glob("denoise-*/*.done")]
    assert {r["model_loads"] for r in records} == {1}
    assert len({r["pid"] for r in records}) <= 2

    # a run killed with one chunk missing: the rerun computes only that one
    before = _markers(flow_store)
    gone = sorted(before)[1]
    next((flow_store.root / "progress").glob(f"denoise-*/{gone}")).unlink()
    flow_store.clear_stage("denoise", "report")
    z = int(gone.split("-z")[1].split(".")[0])
    flow_store.write_region("denoised", (0, 0, slice(z, z + 2)), np.zeros((2, 24, 24), np.float32))
    state = run(cfg, str(flow_store.root), return_state=True)
    assert state.is_completed(), state
    after = _markers(flow_store)
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != gone} == {k: v for k, v in before.items() if k != gone}
    assert after[gone] != before[gone]
    assert [n for n in _task_names(state.state_details.flow_run_id) if n.startswith("denoise-t")] == [
        f"denoise-t0-c0-z{z}"]
    np.testing.assert_array_equal(np.asarray(flow_store.array("denoised")[:]), expected)
    # complete: a third run submits nothing
    state = run(cfg, str(flow_store.root), return_state=True)
    assert not [n for n in _task_names(state.state_details.flow_run_id) if n.startswith("denoise-")]
