"""Which Dask cluster the flows get from ``compute``."""

import logging
import os
import types

import pytest

from tomodenoise.cluster import NANNY_UNSET_ENV, dask_runner_kwargs, gpu_count, slurm_prologue
from tomodenoise.config import ComputeConfig


def test_local_cluster_by_default_with_one_thread_per_worker():
    kw = dask_runner_kwargs(ComputeConfig(n_workers=3, threads_per_worker=2))
    assert kw["cluster_class"] == "distributed.LocalCluster"
    assert kw["cluster_kwargs"]["n_workers"] == 3 and kw["cluster_kwargs"]["threads_per_worker"] == 2
    assert kw["cluster_kwargs"]["env"]["OMP_NUM_THREADS"] == "2"


def test_local_cuda_falls_back_to_cpu_without_a_gpu(monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_count() == 0
    with caplog.at_level(logging.WARNING):
        kw = dask_runner_kwargs(ComputeConfig(cluster="local_cuda"))
    assert kw["cluster_class"] == "distributed.LocalCluster"
    assert "no GPU" in caplog.text


def test_local_cuda_with_gpus_and_dask_cuda(monkeypatch):
    import sys
    import types

    monkeypatch.setattr("tomodenoise.cluster.gpu_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "dask_cuda", types.ModuleType("dask_cuda"))
    kw = dask_runner_kwargs(ComputeConfig(cluster="local_cuda"))
    assert kw["cluster_class"] == "dask_cuda.LocalCUDACluster"  # one worker per visible GPU (its default)


def test_address_and_slurm():
    assert dask_runner_kwargs(ComputeConfig(cluster="address", address="tcp://h:8786")) == {"address": "tcp://h:8786"}
    with pytest.raises(ValueError, match="compute.address"):
        dask_runner_kwargs(ComputeConfig(cluster="address"))
    kw = dask_runner_kwargs(ComputeConfig(cluster="slurm", n_workers=4, slurm={"cores": 8, "memory": "64GB"}))
    assert kw["cluster_class"] == "dask_jobqueue.SLURMCluster"
    assert kw["cluster_kwargs"] == {"cores": 8, "memory": "64GB", "job_script_prologue": slurm_prologue()}
    assert kw["adapt_kwargs"] == {"minimum": 4, "maximum": 4}


def test_a_real_local_cluster_starts_from_these_kwargs():
    from distributed import Client, LocalCluster

    kw = dask_runner_kwargs(ComputeConfig(n_workers=1))["cluster_kwargs"]
    with LocalCluster(**kw, dashboard_address=":0") as cluster, Client(cluster) as client:
        import os

        assert client.submit(lambda: os.environ.get("OMP_NUM_THREADS")).result() == "1"


def test_local_workers_keep_glibc_malloc_defaults(monkeypatch):
    """A nanny sets MALLOC_TRIM_THRESHOLD_ unless told not to; with it a worker's inference ran ~2x slower."""
    import os

    from distributed import Client, LocalCluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # left behind by an earlier nanny
    kw = dask_runner_kwargs(ComputeConfig(n_workers=1))["cluster_kwargs"]
    with LocalCluster(**kw, dashboard_address=":0") as cluster, Client(cluster) as client:
        env = client.submit(lambda: dict(os.environ), pure=False).result()
    assert "MALLOC_TRIM_THRESHOLD_" not in env and env["OMP_NUM_THREADS"] == "1"
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # nor set in this process by the nanny


def test_slurm_jobs_unset_the_nanny_malloc_setting(tmp_path):
    """The job script's prologue gives a SLURM worker's nanny the same Dask setting."""
    import json
    import subprocess
    import sys

    kw = dask_runner_kwargs(ComputeConfig(cluster="slurm", slurm={"cores": 1, "job_script_prologue": ["echo hi"]}))
    prologue = kw["cluster_kwargs"]["job_script_prologue"]
    assert prologue[-1] == "echo hi"  # the user's lines after ours
    show = "import json, distributed, dask; print(json.dumps(dask.config.get('distributed.nanny.pre-spawn-environ')))"
    script = tmp_path / "job.sh"
    script.write_text("\n".join([*prologue[:-1], f'"{sys.executable}" -c "{show}"']) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_") and k != "MALLOC_TRIM_THRESHOLD_"}
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=True).stdout
    pre_spawn = json.loads(out.strip().splitlines()[-1])
    assert all(pre_spawn[name] is None for name in NANNY_UNSET_ENV)
    assert pre_spawn["OMP_NUM_THREADS"] == 1  # Dask's other pre-spawn settings stay


class _Running:
    closed = False

    def close(self):
        self.closed = True


@pytest.mark.parametrize("kind, closed", [("local_cuda", True), ("local", True), ("slurm", False)])
def test_a_local_cluster_gives_way_to_training_a_slurm_one_keeps_its_jobs(kind, closed):
    from tomodenoise.cluster import DaskCluster

    cluster = DaskCluster(ComputeConfig(cluster=kind))
    running = cluster.cluster = _Running()
    cluster.pause()
    assert running.closed is closed
    assert (cluster.cluster is None) is closed  # address() starts a new one for the denoising


def test_slurm_workers_log_into_the_run_log(monkeypatch, tmp_path):
    from tomodenoise.cluster import LOG_PRELOAD
    from tomodenoise.logs import ENV_RUN_LOG, ENV_VERBOSITY

    monkeypatch.setenv(ENV_RUN_LOG, str(tmp_path / "my run" / "run.log"))
    monkeypatch.setenv(ENV_VERBOSITY, "1")
    lines = slurm_prologue()
    assert f"export DASK_DISTRIBUTED__WORKER__PRELOAD=\"['{LOG_PRELOAD}']\"" in lines
    assert f"export {ENV_RUN_LOG}='{tmp_path / 'my run' / 'run.log'}'" in lines  # quoted for the shell
    assert f"export {ENV_VERBOSITY}=1" in lines
    import dask

    # what Dask reads from that variable in a worker job
    assert dask.config.collect_env({"DASK_DISTRIBUTED__WORKER__PRELOAD": f"{[LOG_PRELOAD]!r}"}) == \
        {"distributed": {"worker": {"preload": [LOG_PRELOAD]}}}


class _Watch:
    def __init__(self, error=None):
        self.error, self.stopped = error, False
        self.job_ids = ["5", "6"]

    def check(self):
        if self.error:
            raise self.error

    def stop(self):
        self.stopped = True


def test_check_raises_what_the_slurm_watch_found():
    from tomodenoise.cluster import DaskCluster
    from tomodenoise.hpc.jobs import SlurmError

    DaskCluster(ComputeConfig()).check()  # no watch: nothing
    cluster = DaskCluster(ComputeConfig(cluster="slurm"))
    cluster.watch = _Watch()
    cluster.check()
    cluster.watch = _Watch(SlurmError("SLURM job 5 pending: PartitionConfig: ask for less"))
    with pytest.raises(SlurmError, match="SLURM job 5 pending"):
        cluster.check()


class _Loop:
    def add_callback(self, fn, *args):
        fn(*args)


class _JobqueueCluster:
    def __init__(self):
        self.workers = {"w-0": types.SimpleNamespace(job_id="5"), "w-1": types.SimpleNamespace(job_id="6")}
        self.worker_spec = {"w-0": {}, "w-1": {}}
        self.loop, self.scaled, self.closed = _Loop(), [], False

    def scale(self, n=None, jobs=0):
        self.scaled.append({"n": n, "jobs": jobs})

    def close(self):
        self.closed = True


def test_a_lost_job_is_replaced_only_when_dask_has_not_done_it():
    from tomodenoise.cluster import DaskCluster

    cluster = DaskCluster(ComputeConfig(cluster="slurm"))
    jq = cluster.cluster = _JobqueueCluster()
    cluster._replace("w-0", "4")  # w-0 runs job 5 already (Dask replaced job 4): nothing
    assert jq.scaled == [] and set(jq.workers) == {"w-0", "w-1"}
    cluster._replace("w-0", "5")
    # scale() submits a job for w-0; in jobs (scale(n) counts workers: fewer jobs with processes > 1)
    assert jq.scaled == [{"n": None, "jobs": 2}] and set(jq.workers) == {"w-1"}


def test_close_stops_the_watch_and_cancels_the_jobs_slurm_still_holds(monkeypatch):
    from tomodenoise.hpc import jobs as slurm
    from tomodenoise.cluster import DaskCluster
    from tomodenoise.hpc.jobs import Job

    cancelled = []
    monkeypatch.setattr(slurm, "jobs", lambda ids: {"5": Job("5", "CANCELLED"), "6": Job("6", "PENDING", "Priority")})
    monkeypatch.setattr(slurm, "cancel", lambda ids: cancelled.extend(ids))
    cluster = DaskCluster(ComputeConfig(cluster="slurm"))
    jq = cluster.cluster = _JobqueueCluster()
    watch = cluster.watch = _Watch()
    cluster.close()
    assert watch.stopped and jq.closed and cluster.cluster is None and cluster.watch is None
    assert cancelled == ["6"]


class _Future:
    """Like a real future: a callback added after it finished is called at once."""

    def __init__(self):
        self.callbacks, self.finished, self.lock = [], False, __import__("threading").Lock()

    def add_done_callback(self, fn):
        with self.lock:
            if not self.finished:
                self.callbacks.append(fn)
                return
        fn(self)

    def finish(self):
        with self.lock:
            self.finished = True
            callbacks, self.callbacks = self.callbacks, []
        for fn in callbacks:
            fn(self)


def test_waiting_for_tasks_looks_at_the_cluster_and_raises_its_error():
    import threading

    from flows.pipeline import completed
    from tomodenoise.hpc.jobs import SlurmError

    futures = [_Future(), _Future()]
    checks, handed_out = [], []

    def check():
        checks.append(1)
        if handed_out:  # from now on the cluster cannot run the other one
            raise SlurmError("SLURM job 5 pending: PartitionConfig: ask for less")

    threading.Timer(0.05, futures[1].finish).start()
    got = completed(futures, check, every=0.02)
    assert next(got) is futures[1]  # as they complete, checking the cluster meanwhile
    handed_out.append(futures[1])
    with pytest.raises(SlurmError, match="SLURM job 5 pending"):  # the other never does: the error, not a hang
        next(got)
    assert len(checks) >= 2


def test_slurm_jobs_get_the_flow_runs_own_code_on_their_path(tmp_path, monkeypatch):
    """A deployment's flow module (loaded by path, with its folder on sys.path) must be importable
    in the worker jobs: the job script exports the run's own folders, not the environment's."""
    import site
    import sys

    from tomodenoise.cluster import code_path

    flows = tmp_path / "checkout" / "flows"
    flows.mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(flows), *site.getsitepackages(), sys.prefix + "/lib", *sys.path])
    own = code_path()
    assert own[0] == str(flows.resolve())
    assert not any("site-packages" in p for p in own)
    line = slurm_prologue()[-1]
    assert line.startswith(f"export PYTHONPATH={flows.resolve()}") and line.endswith('"${PYTHONPATH:+:$PYTHONPATH}"')
