"""``tomodenoise run`` with ``compute.cluster: slurm`` against the real one-node SLURM (the ``slurm``
fixture), as a user runs it (a child process, its own console).

- a run ends with exit 0 and a complete store, its Dask work in one allocation of
  ``compute.n_workers`` jobs (seen in ``squeue`` while it runs, cancelled at the end), the
  workers' log records in its ``report/run.log`` and their job logs named there;
- a job script SLURM refuses (an invalid gres) fails the run before any job, in one line;
- a job pending for a reason that cannot clear (a partition of our own whose MaxTime is below the
  walltime: PartitionTimeLimit, which ``sbatch --test-only`` accepts) ends the run with its reason;
- a worker job killed by ``scancel`` mid-reconstruction, and one that reaches its time limit
  (walltime 1 minute: SLURM ends it 60 to 90 s after its start), are each one warning, and the run
  completes on replacement jobs.

Each failure's time to surface is printed at the end (``-s``, or the terminal summary).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
TINY = {
    "recon": {"z_chunk": 1},
    "train": {"epochs": 2, "batch_size": 4, "patch_size": 16, "patches_per_slice": 1, "early_stopping": 0,
              "max_minutes": 0.2},
    "output": {"previews": 1},
}
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    from tomodenoise.simulate.scan import simulate_foam_scan

    path = tmp_path_factory.mktemp("slurm-scan") / "foam.h5"
    simulate_foam_scan(path, size=32, n_angles=64, n_slices=4, n_spheres=40)
    return path


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    yield
    if TIMINGS:
        print("\nSLURM failures, seconds to surface: " + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))


def _node() -> tuple[str, int]:
    """The node of the default partition and its CPUs (``sinfo``: never hard-coded)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%N|%c"], capture_output=True, text=True, check=True).stdout
    node, cpus = out.split()[0].split("|")
    return node, int(cpus.rstrip("+"))


class Queue(threading.Thread):
    """``squeue`` for one job name every 0.5 s while a test runs: each job's states in order."""

    def __init__(self, job_name: str):
        super().__init__(daemon=True)
        self.job_name, self.seen, self.first_seen = job_name, {}, None
        self.when: dict[tuple[str, str], float] = {}  # (job id, state) -> when first seen (time.time())
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.look()
            self._halt.wait(0.5)

    def look(self) -> dict[str, str]:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-n", self.job_name, "-o", "%i|%T"],
                             capture_output=True, text=True).stdout
        now = {}
        for line in out.split():
            jid, state = line.split("|")
            now[jid] = state
            states = self.seen.setdefault(jid, [])
            if not states or states[-1] != state:
                states.append(state)
                self.when.setdefault((jid, state), time.time())
            if self.first_seen is None:
                self.first_seen = time.monotonic()
        return now

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def active(self) -> list[str]:
        return [jid for jid, state in self.look().items() if state in ACTIVE]


def _run(tmp: Path, scan: Path, job_name: str, slurm: dict, *, n_workers: int = 2, train: dict | None = None,
         timeout: float = 300, during=None, api: str | None = None) -> tuple[int, str, str, Path, Queue, float]:
    """``tomodenoise run`` on ``scan`` with ``compute.cluster: slurm``; returns (exit status, stdout,
    stderr, store, the queue seen, seconds). ``during(proc, queue, store)`` runs while it does.
    ``api``: a Prefect server to report to (default: the run's own embedded server)."""
    cfg = {**TINY, "train": {**TINY["train"], **(train or {})},
           "compute": {"cluster": "slurm", "n_workers": n_workers,
                       "slurm": {"cores": 1, "memory": "1GB", "walltime": "00:10:00", "job_name": job_name, **slurm}}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TOMODENOISE_", "DASK_"))}
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PYTHONUNBUFFERED="1", **({"PREFECT_API_URL": api} if api else {}))
    out_root = tmp / "out"
    queue = Queue(job_name)
    queue.start()
    t0 = time.monotonic()
    with (tmp / "cli.out").open("w") as out, (tmp / "cli.err").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tomodenoise.cli", "run", str(scan), "--out", str(out_root),
                                 "-c", str(tmp / "run.yaml")], env=env, stdout=out, stderr=err, cwd=tmp,
                                start_new_session=True)
        try:
            if during is not None:
                during(proc, queue, out_root / scan.stem)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the CLI and what it started (its own session)
                proc.wait()
            seconds = time.monotonic() - t0
            queue.stop()
            left = queue.active()
            if left:  # only this test's jobs (its job name)
                subprocess.run(["scancel", *left])
    return rc, (tmp / "cli.out").read_text(), (tmp / "cli.err").read_text(), out_root / scan.stem, queue, seconds


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _ended(queue: Queue) -> dict[str, str]:
    """The final state of each job the test saw (``scontrol``: squeue drops ended jobs)."""
    states = {}
    for jid in queue.seen:
        out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True).stdout
        m = re.search(r"JobState=(\S+)", out)
        states[jid] = m.group(1) if m else "GONE"
    return states


def test_a_run_on_slurm_is_one_allocation_and_its_workers_log_into_run_log(slurm, scan, tmp_path):
    node, cpus = _node()
    if cpus < 2:
        pytest.skip(f"the node {node} has {cpus} CPU: two 1-CPU worker jobs need 2")
    name = f"tdn-run-{uuid.uuid4().hex[:8]}"
    rc, out, err, store, queue, seconds = _run(tmp_path, scan, name, {})
    assert rc == 0, (out + err)[-3000:]
    assert "Traceback" not in err and not _error_lines(err), err

    from tomodenoise.io.store import ScanStore

    s = ScanStore(store)
    assert all(s.stage_done(stage) for stage in ("ingest", "reconstruct", "train", "denoise", "report")), s.attrs
    # one allocation for the Dask work of the run: reconstruction and denoising share its 2 jobs
    assert len(queue.seen) == 2, queue.seen
    assert all("RUNNING" in states for states in queue.seen.values()), queue.seen
    ended = _ended(queue)
    assert all(state in ("CANCELLED", "COMPLETED", "GONE") for state in ended.values()), ended  # nothing left
    run_log = (store / "report" / "run.log").read_text()
    for jid in queue.seen:  # each job's own stdout/stderr, named in the run log
        m = re.search(rf"SLURM job {jid} \(Dask worker \S+\) submitted; its output: (\S+)\.out\|\.err", run_log)
        assert m, f"job {jid} not named in run.log"
        assert Path(m.group(1) + ".err").is_file()
    workers = [line for line in run_log.splitlines() if " Dask Worker process " in line]
    assert any("distributed.worker" in line for line in workers), "no worker's record in run.log"
    assert any("tomodenoise" in line for line in workers) or any("prefect" in line for line in workers), workers[:5]
    print(f"\nrun on SLURM: {seconds:.1f} s, jobs {sorted(queue.seen)}")


def test_a_job_script_slurm_refuses_fails_the_run_before_any_job_in_one_line(slurm, scan, tmp_path, prefect_api):
    name = f"tdn-gres-{uuid.uuid4().hex[:8]}"
    rc, out, err, store, queue, seconds = _run(tmp_path, scan, name, {"job_extra_directives": ["--gres=gpux:1"]},
                                               timeout=180, api=prefect_api)
    TIMINGS["refused job script (whole run)"] = seconds
    errors = _error_lines(err)
    assert rc == 2, (out + err)[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "SLURM refuses the job script (Invalid generic resource (gres) specification)" in errors[0]
    assert "compute.slurm" in errors[0]  # the remedy
    assert queue.seen == {}  # nothing was submitted
    assert seconds < 120


@pytest.fixture
def short_partition(slurm):
    """A hidden partition of our own on the node, MaxTime 1 minute, deleted after."""
    node, _ = _node()
    name = f"tdn{uuid.uuid4().hex[:6]}"
    subprocess.run(["scontrol", "create", f"PartitionName={name}", f"Nodes={node}", "MaxTime=1", "State=UP",
                    "Hidden=YES"], check=True, capture_output=True)
    yield name
    subprocess.run(["scontrol", "delete", f"PartitionName={name}"], capture_output=True)


def test_a_job_pending_for_a_reason_that_cannot_clear_ends_the_run_with_it(slurm, scan, tmp_path, short_partition,
                                                                           prefect_api):
    name = f"tdn-pend-{uuid.uuid4().hex[:8]}"
    # sbatch --test-only accepts a walltime over the partition's MaxTime; the job then pends for ever
    rc, out, err, store, queue, seconds = _run(tmp_path, scan, name, {"queue": short_partition,
                                                                       "walltime": "00:05:00"}, timeout=180,
                                               api=prefect_api)
    ended_at = time.monotonic()
    errors = _error_lines(err)
    assert rc == 2, (out + err)[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert re.match(r"error: SLURM job \d+ pending: PartitionTimeLimit: the time limit exceeds the partition's "
                    r"MaxTime; ask for a shorter walltime", errors[0]), errors[0]
    assert queue.seen and all(states[0] == "PENDING" for states in queue.seen.values()), queue.seen
    assert all(state in ("CANCELLED", "GONE") for state in _ended(queue).values())  # cancelled at the end
    TIMINGS["pending for ever (from the job's submission to the run's end)"] = ended_at - queue.first_seen
    TIMINGS["pending for ever (whole run)"] = seconds
    assert seconds < 120


def test_lost_worker_jobs_are_one_warning_each_and_the_run_completes(slurm, scan, tmp_path, prefect_api):
    """One worker job cancelled mid-reconstruction, then a time limit of 1 minute for every job: the
    training (1.2 min) outlasts it (SLURM ends a job 60 to 90 s after its start), so the jobs reach
    it while the run goes on."""
    node, cpus = _node()
    if cpus < 2:
        pytest.skip(f"the node {node} has {cpus} CPU: two 1-CPU worker jobs need 2")
    name = f"tdn-lost-{uuid.uuid4().hex[:8]}"
    killed: dict[str, float] = {}

    def cancel_one_mid_reconstruction(proc, queue, store):
        run_log = store / "report" / "run.log"
        t_end = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < t_end:
            text = run_log.read_text() if run_log.exists() else ""
            running = sorted(jid for jid, st in queue.look().items() if st == "RUNNING")
            # both jobs running, their workers connected, reconstruction tasks under way
            if len(running) == 2 and text.count("Register worker") >= 2 and "reconstruction chunks" in text:
                time.sleep(2)
                subprocess.run(["scancel", running[0]], check=True)
                killed[running[0]] = time.time()
                return
            time.sleep(0.3)

    rc, out, err, store, queue, seconds = _run(tmp_path, scan, name, {"walltime": "00:01:00"},
                                               train={"epochs": 1000, "max_minutes": 1.2}, timeout=400,
                                               during=cancel_one_mid_reconstruction, api=prefect_api)
    assert rc == 0, (out + err)[-3000:]
    assert killed, "no job was cancelled"
    (jid,) = killed
    run_log = (store / "report" / "run.log").read_text()
    assert "reconstruct " in out + err and "denoise " in out + err
    warnings = [line for line in err.splitlines() if line.startswith("warning: SLURM job")]
    cancelled = [w for w in warnings if f"SLURM job {jid} " in w and "ended CANCELLED" in w]
    assert len(cancelled) == 1 and "a new job is submitted" in cancelled[0], warnings
    timed_out = [w for w in warnings if "ended TIMEOUT" in w]
    assert timed_out and all("ask for a longer walltime (compute.slurm.walltime)" in w for w in timed_out), warnings
    assert not _error_lines(err) and "Traceback" not in err, err
    assert len(queue.seen) >= 3  # replacements were submitted
    assert all(state in ("CANCELLED", "COMPLETED", "TIMEOUT", "GONE") for state in _ended(queue).values())
    # when the watch said so, from its warning's time stamp in the run log
    TIMINGS["scancel (to the warning)"] = _warned_at(run_log, jid, "CANCELLED") - killed[jid]
    for tid, states in queue.seen.items():
        if "TIMEOUT" in states and (tid, "TIMEOUT") in queue.when:
            TIMINGS[f"time limit (job {tid}: squeue's TIMEOUT to the warning)"] = \
                _warned_at(run_log, tid, "TIMEOUT") - queue.when[(tid, "TIMEOUT")]
    TIMINGS["lost workers run (whole run)"] = seconds


def _warned_at(run_log: str, jid: str, state: str) -> float:
    """When the run log's warning about job ``jid`` ending ``state`` was written (time.time())."""
    from datetime import datetime

    m = re.search(rf"^(\S+ \S+) WARNING .*SLURM job {jid} \(Dask worker \S+\) ended {state}", run_log, re.M)
    assert m, f"no warning about job {jid} {state} in run.log"
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
