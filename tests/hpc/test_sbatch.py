"""The job scripts on the real one-node SLURM, submitted through ``tomodenoise slurm``:
``pipeline.sbatch`` (a scan's whole pipeline in one allocation), ``train.sbatch`` as shipped
(sized from ``sinfo`` and the configuration), and a request that can never start: refused by
``sbatch --test-only`` before anything is submitted, or, submitted by hand, watched to a
one-line failure. Every size is read from ``sinfo`` (CI's node declares 2 CPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tomodenoise import pipeline
from tomodenoise.config import RunConfig
from tomodenoise.hpc import SCRIPTS
from tomodenoise.hpc.submit import partition_nodes
from tomodenoise.simulate.scan import simulate_foam_scan

CLI = str(Path(sys.executable).with_name("tomodenoise"))
REPO = Path(__file__).resolve().parents[2]
TINY = {
    "recon": {"z_chunk": 2},
    "model": {"name": "msd", "params": {"depth": 3, "width": 1}},
    # gloo ranks on CPU cores: the node's GPUs are fake (CUDA_VISIBLE_DEVICES, no device)
    "train": {"epochs": 1, "patch_size": 16, "patches_per_slice": 1, "progress": False, "device": "cpu", "ranks": 2},
    "inference": {"device": "cpu"},
    "output": {"previews": 1},
    "compute": {"n_workers": 2},
}


def _env() -> dict[str, str]:
    """This environment without Prefect settings (the job's `tomodenoise run` starts its own server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["TOMODENOISE_ENV"] = sys.prefix
    return env


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=_env(), capture_output=True, text=True, timeout=timeout)


def _cpus() -> int:
    """CPUs to ask for: the node's, at most 2 (other jobs may share this node)."""
    _, nodes = partition_nodes()
    return min(2, min(n.cpus for n in nodes))


def _scan(folder: Path) -> Path:
    return simulate_foam_scan(folder / "foam.h5", size=24, n_angles=32, n_slices=4, i0=200.0, seed=3,
                              n_spheres=40)["scan"]


@pytest.fixture(scope="module")
def reconstructed(tmp_path_factory, slurm):
    """A store whose reconstruction is done (in this process), and its run configuration."""
    d = tmp_path_factory.mktemp("slurm-train")
    cfg = RunConfig.model_validate(TINY)
    cfg.input.path = str(_scan(d))
    cfg.output.root = str(d / "out")
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    return store, cfg, d


def test_pipeline_sbatch_runs_a_scan_in_one_allocation(tmp_path, slurm):
    scan = _scan(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(TINY))
    t0 = time.monotonic()
    r = _cli("slurm", "pipeline", str(scan), "--out", str(tmp_path / "out"), "-c", str(tmp_path / "run.yaml"),
             "--cpus-per-task", str(_cpus()), "--mem", "2G", "--wait", timeout=400)
    seconds = time.monotonic() - t0
    store = tmp_path / "out" / "foam"
    logs = sorted((store / "report" / "slurm").glob("pipeline-*.log"))
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n" + (logs[-1].read_text()[-4000:] if logs else "no job log")
    assert "COMPLETED" in r.stdout and logs, r.stdout
    import xarray as xr

    ds = xr.open_zarr(store / "scan.zarr")
    assert ds.denoised.shape == (1, 1, 4, 24, 24) and float(abs(ds.denoised).max()) > 0
    stages = ds.attrs["stages"]
    assert all(stages[s].get("complete", True) for s in ("ingest", "reconstruct", "train", "denoise", "report"))
    assert stages["train"]["ranks"] == 2  # srun torchrun, 2 gloo ranks in the allocation
    assert (store / "report" / "metrics.json").exists() and (store / "report" / "report.md").exists()
    run_log = (store / "report" / "run.log").read_text()
    assert "on 2 Dask workers" in run_log  # the reconstruction on the allocation's workers
    assert "Connecting to an existing Dask cluster" in run_log  # the denoising on them too, through Prefect
    assert "Dask Worker process" in run_log  # the workers' own records reach the run log
    job_log = logs[-1].read_text()
    assert "Dask scheduler tcp://" in job_log and "train       already done" in job_log
    print(f"pipeline.sbatch: {seconds:.0f} s from submission to COMPLETED")


def test_train_sbatch_as_shipped_sized_from_sinfo(reconstructed):
    store, cfg, d = reconstructed
    cfg.save(d / "run.yaml")
    t0 = time.monotonic()
    r = _cli("slurm", "train", str(store.root), "-c", str(d / "run.yaml"), "--cpus-per-task", str(_cpus()),
             "--mem", "2G", "--wait")
    logs = sorted((store.root / "report" / "slurm").glob("train-*.log"))
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n" + (logs[-1].read_text()[-4000:] if logs else "no job log")
    assert "2 DDP ranks" in r.stdout and "COMPLETED" in r.stdout
    info = store.stage_info("train")
    assert info["ranks"] == 2 and (store.model_dir / "best.pt").exists()
    assert pipeline.stage_current(store, "train", pipeline.key_for(store, cfg, "train"))
    print(f"train.sbatch: {time.monotonic() - t0:.0f} s from submission to COMPLETED")


def test_a_request_beyond_the_node_is_refused_before_submission(reconstructed):
    store, cfg, d = reconstructed
    _, nodes = partition_nodes()
    most = max(n.cpus for n in nodes)
    cases = [("--cpus-per-task", str(most + 1))]
    if most < 32:  # train.sbatch as shipped asks for 32 CPUs and 4 GPUs
        cases.append(("--as-is",))
    for extra in cases:
        before, configs = _train_jobs(), set((store.root / "report" / "slurm").glob("train-*.yaml"))
        r = _cli("slurm", "train", str(store.root), *extra)
        assert r.returncode == 1, (extra, r.stdout, r.stderr)
        said = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(said) == 1 and "SLURM refuses the job script" in said[0] and "no job was submitted" in said[0], said
        assert "submitted job" not in r.stdout
        assert _train_jobs() == before and set((store.root / "report" / "slurm").glob("train-*.yaml")) == configs, "submitted"


def test_a_job_pending_for_ever_fails_in_one_line_within_two_minutes(reconstructed):
    """Submitted by hand, as shipped but asking for more CPUs than any node: SLURM accepts it
    and it pends with Reason=PartitionConfig; `tomodenoise slurm watch` says so in one line."""
    store, cfg, d = reconstructed
    _, nodes = partition_nodes()
    out = subprocess.run(["sbatch", "--parsable", f"--cpus-per-task={max(n.cpus for n in nodes) + 1}", "--mem=100M",
                          "--gpus-per-node=0", str(SCRIPTS / "train.sbatch"), str(store.root), str(d / "run.yaml")],
                         capture_output=True, text=True, env=_env(), timeout=30)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    try:
        t0 = time.monotonic()
        r = _cli("slurm", "watch", job, timeout=180)
        seconds = time.monotonic() - t0
        said = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 1 and len(said) == 1, (r.stdout, r.stderr)
        assert "Reason=PartitionConfig" in said[0] and f"scancel {job}" in said[0], said
        assert seconds < 120
        print(f"PartitionConfig: failed in one line after {seconds:.1f} s")
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)


def _train_jobs() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-n", "tomodenoise-train", "-o", "%i"], capture_output=True, text=True,
                         timeout=30)
    return set(out.stdout.split())
