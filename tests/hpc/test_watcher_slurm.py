"""The watcher deployment on a process worker that submits to SLURM: a scan dropped in the
watched folder ends as a completed pipeline run with its store, its Dask work in SLURM jobs
(``compute.cluster: slurm`` in the runs' configuration). The server, the deployments of
``deploy/prefect.yaml`` and the worker are the service tests' (``tests/service/_server.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tomodenoise.simulate.scan import simulate_foam_scan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from _server import deployed_worker, start_server  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


TINY = {  # what the watcher passes to every run (a run may not set compute.slurm: the deployment does)
    "recon": {"z_chunk": 2},
    "model": {"name": "msd", "params": {"depth": 3, "width": 1}},
    "train": {"epochs": 1, "patch_size": 16, "patches_per_slice": 1, "progress": False, "device": "cpu"},
    "inference": {"device": "cpu"},
    "output": {"previews": 1},
}


def _slurm_compute(partition: str, logs: Path) -> dict:
    """The pipeline deployment's compute section: the Dask work in one SLURM job of 1 CPU (as a
    site's deploy/prefect.yaml would hold it, with deploy/slurm/cluster.yaml's keys).

    No PYTHONPATH here: Prefect loads ``flows/pipeline.py`` by path as the module ``pipeline``
    (flows/ and the checkout on the flow run's sys.path) and the tasks it sends refer to it; the
    worker job script hands those folders on (``tomodenoise.cluster.code_path``), as
    multiprocessing does for local workers. Without that every task failed with "No module
    named 'pipeline'" (KilledWorker)."""
    return {"cluster": "slurm", "n_workers": 1, "slurm": {
        "queue": partition, "cores": 1, "processes": 1, "memory": "1500MB", "walltime": "00:15:00",
        "python": sys.executable, "log_directory": str(logs), "job_name": "tomodenoise-watcher-dask",
        "local_directory": "/tmp"}}


def _wait(http: httpx.Client, find, timeout: float, what: str, logs) -> dict:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        found = find(http)
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what} not within {timeout:.0f} s\n{logs()}")


def test_a_new_scan_ends_as_a_completed_run_with_its_dask_work_on_slurm(tmp_path, slurm):
    raw, out, dask_logs = tmp_path / "raw", tmp_path / "out", tmp_path / "dask-logs"
    raw.mkdir()
    t0 = time.monotonic()
    with start_server(tmp_path / "server") as server, deployed_worker(server, tmp_path, raw, out) as worker_log:
        def logs() -> str:
            jobs = "\n".join(f"{p.name}: {p.read_text(errors='replace')[-1500:]}" for p in sorted(dask_logs.glob("*")))
            run_log = out / "drop" / "report" / "run.log"
            return (f"worker log:\n{worker_log.read_text(errors='replace')[-4000:]}\nrun log:\n"
                    f"{run_log.read_text(errors='replace')[-3000:] if run_log.exists() else '-'}\nSLURM jobs' logs:\n"
                    f"{jobs}\nserver log:\n{server.log_tail(2000)}")

        # the scan is written elsewhere and dropped in whole, as an acquisition system would
        scan = simulate_foam_scan(tmp_path / "incoming" / "drop.h5", size=24, n_angles=32, n_slices=4, i0=200.0,
                                  seed=3, n_spheres=40)["scan"]
        shutil.move(scan, raw / "drop.h5")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            watcher = http.get("/deployments/name/tomodenoise-watcher/watcher").raise_for_status().json()
            pipe = http.get("/deployments/name/tomodenoise-pipeline/pipeline").raise_for_status().json()
            config = dict(pipe["parameters"]["config"], compute=_slurm_compute(slurm, dask_logs))
            http.patch(f"/deployments/{pipe['id']}",
                       json={"parameters": dict(pipe["parameters"], config=config)}).raise_for_status()
            params = {"min_age_s": 0, "max_retries": 0, "overrides": TINY}
            http.post(f"/deployments/{watcher['id']}/create_flow_run",
                      json={"parameters": params}).raise_for_status()

            def pipeline_run(http):
                runs = http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [pipe["id"]]}}}).json()
                return runs[0] if runs else None

            run = _wait(http, pipeline_run, 120, "the watcher's pipeline run", logs)
            assert run["parameters"]["scan"] == str((raw / "drop.h5").resolve())
            seen_in_squeue: set[str] = set()

            def final(http):
                jobs = subprocess.run(["squeue", "-h", "-n", "tomodenoise-watcher-dask", "-t", "RUNNING", "-o", "%i"],
                                      capture_output=True, text=True, timeout=30).stdout.split()
                seen_in_squeue.update(jobs)
                r = http.get(f"/flow_runs/{run['id']}").raise_for_status().json()
                return r if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

            done = _wait(http, final, 240, "the pipeline run's end", logs)
            assert done["state_type"] == "COMPLETED", (done["state"].get("message"), logs())
    store = out / "drop"
    assert (store / "scan.zarr" / "zarr.json").exists() and (store / "model" / "best.pt").exists()
    assert (store / "report" / "metrics.json").exists()
    import xarray as xr

    assert xr.open_zarr(store / "scan.zarr").denoised.shape == (1, 1, 4, 24, 24)
    # the Dask work ran in SLURM jobs: seen running in squeue while the run lasted, each with its worker's log
    # (the nanny's; the worker's own records go to the run log)
    assert seen_in_squeue and all("Start Nanny" in (dask_logs / f"tomodenoise-watcher-dask-{j}.err").read_text()
                                  for j in seen_in_squeue)
    run_log = (store / "report" / "run.log").read_text()
    assert "(slurm)" in run_log and "Start worker" in run_log  # "... to compute in N tasks (slurm)"
    print(f"watcher -> pipeline on SLURM: {time.monotonic() - t0:.0f} s (SLURM jobs {sorted(seen_in_squeue)})")
