"""Load on the deployment's database: a Prefect server on a real PostgreSQL, two process workers.

- 8 tiny scans (``TOMODENOISE_LOAD_SCANS=20`` for the load figure of benchmarks/RESULTS.md) submitted at once through ``tomodenoise.api.Client``; one worker is SIGKILLed
  while runs are in flight and another is started: every scan completes, with exactly one
  completed run, and its store's stage records were written by that run.
- One scan submitted twice: the store lock serialises the two runs (their locked sections do
  not overlap), the second waits for the first and finds its stages complete.

What Prefect 3.8.8 does with the runs of a killed worker (found here): a process worker starts
each flow run as a child process in its own session, so SIGKILL of the worker alone leaves the
flow run processes alive; they finish and report to the server on their own. Nothing on the
server marks a run crashed when its process dies (the Foreman marks only the *worker* offline;
crash detection needs flow-run heartbeats plus a user-made automation), so a run whose process
is gone stays RUNNING or PENDING. The operator's rule, as the watcher applies it (``tomodenoise
.watch``: FAILED, CRASHED and vanished runs are resubmitted), is played here by
:func:`_reap_and_resubmit`: a run whose process is dead is set CRASHED and the scan resubmitted;
the store lock and the stage records make the resubmission resume rather than redo.

Prints runs/minute and the longest queue wait (SCHEDULED -> RUNNING) and writes them to
``bench-output/postgres_load.json``. ``TOMODENOISE_LOAD_SCANS`` changes the number of scans.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest

from tomodenoise.api import Client, RetryTransport
from tomodenoise.simulate.scan import simulate_foam_scan

from _server import start_server  # tests/service/ is on sys.path (see conftest.py)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
# 8 keep the suite's time (2 workers of 2 runs each: a queue, and runs in flight when one dies);
# the figure in benchmarks/RESULTS.md is of 20.
N_SCANS = int(os.environ.get("TOMODENOISE_LOAD_SCANS", "8"))
TINY = {
    "recon": {"z_chunk": 2},
    "model": {"name": "msd", "params": {"depth": 2, "width": 1}},
    "train": {"epochs": 1, "patch_size": 16, "patches_per_slice": 1, "progress": False},
    "output": {"previews": 1},
    "compute": {"cluster": "threads", "n_workers": 1},
}
STAGES = ("ingest", "reconstruct", "train", "denoise")
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class Workers:
    """``prefect worker start`` processes on the pool; each in its own session."""

    def __init__(self, env: dict, tmp: Path):
        self.env, self.tmp, self.procs, self.logs = env, tmp, {}, {}

    def start(self, name: str) -> psutil.Process:
        self.logs[name] = self.tmp / f"worker-{name}.log"
        with self.logs[name].open("w") as log:
            proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", "tomodenoise", "--limit", "2",
                                     "--name", name], cwd=self.tmp, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return psutil.Process(proc.pid)

    def tails(self, n: int = 2500) -> str:
        return "\n".join(f"worker {k} log:\n{p.read_text(errors='replace')[-n:]}" for k, p in self.logs.items())

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def pg_service(postgres, tmp_path_factory):
    """Prefect server on PostgreSQL, the pipeline deployment from deploy/prefect.yaml, two workers."""
    tmp = tmp_path_factory.mktemp("pg-service")
    raw, out = tmp / "raw", tmp / "out"
    raw.mkdir()
    with start_server(tmp / "server", database_url=postgres.url("prefect")) as server:
        env = dict(server.subprocess_env(), TOMODENOISE_REPO=str(REPO), TOMODENOISE_INPUT_ROOTS=str(raw),
                   TOMODENOISE_OUTPUT_ROOT=str(out), PREFECT_WORKER_QUERY_SECONDS="1",
                   PREFECT_WORKER_PREFETCH_SECONDS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

        def prefect(*args: str) -> str:
            r = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, f"prefect {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            return r.stdout

        prefect("work-pool", "create", "tomodenoise", "--type", "process")
        # Only the pipeline: the watcher's schedule would start runs of the same scans on its own.
        prefect("--no-prompt", "deploy", "--name", "pipeline", "--prefect-file", "deploy/prefect.yaml")
        workers = Workers(env, tmp)
        workers.start("w1")
        workers.start("w2")
        try:
            yield {"server": server, "raw": raw, "out": out, "tmp": tmp, "workers": workers, "postgres": postgres}
        finally:
            workers.stop_all()


def _http(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, transport=RetryTransport())


def _runs_of(http: httpx.Client, dep_id: str) -> list[dict]:
    runs, offset = [], 0
    while True:
        page = http.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [dep_id]}},
                                                     "limit": 200, "offset": offset}).raise_for_status().json()
        runs += page
        if len(page) < 200:
            return runs
        offset += 200


def _states(http: httpx.Client, run_id: str) -> list[dict]:
    return http.get("/flow_run_states/", params={"flow_run_id": run_id}).raise_for_status().json()


def _queue_wait(http: httpx.Client, run_id: str) -> float | None:
    """Seconds from the run's first SCHEDULED state to its first RUNNING state."""
    states = sorted(_states(http, run_id), key=lambda s: s["timestamp"])
    t_sched = next((_ts(s["timestamp"]) for s in states if s["type"] == "SCHEDULED"), None)
    t_run = next((_ts(s["timestamp"]) for s in states if s["type"] == "RUNNING"), None)
    return None if t_sched is None or t_run is None else t_run - t_sched


def _pid_alive(pid: str | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(int(str(pid).rsplit(":", 1)[-1])).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False


def _reap_and_resubmit(http: httpx.Client, api: Client, runs: list[dict], by_scan: dict[str, str],
                       pending_since: dict[str, float], log: list[dict]) -> None:
    """For each scan whose latest run ended badly or lost its process: mark it, resubmit the scan."""
    now = time.monotonic()
    for scan, run_id in list(by_scan.items()):
        run = next((r for r in runs if r["id"] == run_id), None)
        if run is None:
            continue
        state, why = run["state_type"], None
        if state in ("FAILED", "CRASHED"):
            why = state
        elif state in ("RUNNING", "PENDING"):
            since = pending_since.setdefault(run_id, now)
            if _pid_alive(run.get("infrastructure_pid")):
                continue
            # a RUNNING run without a live process; a PENDING one that got none within 60 s
            if (state == "RUNNING" and run.get("infrastructure_pid")) or now - since > 60:
                http.post(f"/flow_runs/{run_id}/set_state", json={
                    "state": {"type": "CRASHED", "message": "its process is gone (worker killed)"},
                    "force": True}).raise_for_status()
                why = f"{state} without a process"
        if why:
            new_id = api.start_run(scan, overrides=TINY)
            log.append({"scan": Path(scan).stem, "run": run_id, "why": why, "resubmitted_as": new_id,
                        "message": (run.get("state") or {}).get("message")})
            by_scan[scan] = new_id


def _kill_a_worker_midway(http: httpx.Client, dep_id: str, workers: Workers, timeout: float = 180) -> dict:
    """SIGKILL the first worker seen with a RUNNING flow run; start a new one. Says what it had."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        runs = _runs_of(http, dep_id)
        for name, proc in list(workers.procs.items()):
            try:
                children = {str(p.pid) for p in psutil.Process(proc.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                continue
            mine = [r for r in runs if r.get("infrastructure_pid") in children]
            if not any(r["state_type"] == "RUNNING" for r in mine):
                continue
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            workers.start("w3")
            time.sleep(5)
            pids = sorted(r["infrastructure_pid"] for r in mine)
            return {"worker": name, "runs": [r["id"] for r in mine], "their_states": [r["state_name"] for r in mine],
                    "their_pids": pids, "alive_5s_after_kill": [p for p in pids if _pid_alive(p)]}
        time.sleep(0.5)
    pytest.fail(f"no worker had a RUNNING flow run within {timeout} s\n{workers.tails()}")


def test_scans_on_postgres_with_a_worker_killed(pg_service):
    server, raw, out, workers = (pg_service[k] for k in ("server", "raw", "out", "workers"))
    scans = [str(simulate_foam_scan(raw / f"load{i:02d}.h5", size=16, n_angles=16, n_slices=2, i0=200.0,
                                    seed=i, n_spheres=10)["scan"]) for i in range(N_SCANS)]
    with Client(server.url) as api, _http(server) as http:
        dep_id = api.deployment_id()
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=8) as pool:  # "at once": concurrent create_flow_run calls
            first = list(pool.map(lambda s: api.start_run(s, overrides=TINY), scans))
        submit_s = time.time() - t0
        by_scan = dict(zip(scans, first))
        killed = _kill_a_worker_midway(http, dep_id, workers)
        resubmitted: list[dict] = []
        pending_since: dict[str, float] = {}
        t_end = time.monotonic() + 420
        while True:
            runs = _runs_of(http, dep_id)
            _reap_and_resubmit(http, api, runs, by_scan, pending_since, resubmitted)
            latest = {s: next(r for r in runs if r["id"] == rid) if any(r["id"] == rid for r in runs) else None
                      for s, rid in by_scan.items()}
            if all(r is not None and r["state_type"] == "COMPLETED" for r in latest.values()):
                break
            if time.monotonic() > t_end:
                pending = {Path(s).stem: r and r["state_name"] for s, r in latest.items()
                           if not r or r["state_type"] != "COMPLETED"}
                pytest.fail(f"not all scans completed: {pending}\nresubmitted {resubmitted}\n{workers.tails()}\n"
                            f"server log:\n{server.log_tail(3000)}")
            time.sleep(1)
        t_done = max(_ts(r["end_time"]) for r in latest.values())
        runs = _runs_of(http, dep_id)
        waits = {r["id"]: _queue_wait(http, r["id"]) for r in runs}

    # nothing lost, nothing run twice: one COMPLETED run per scan, every other run of it ended
    per_scan: dict[str, list[dict]] = {}
    for r in runs:
        per_scan.setdefault(r["parameters"]["scan"], []).append(r)
    assert sorted(per_scan) == sorted(scans)
    for scan, rs in per_scan.items():
        done = [r for r in rs if r["state_type"] == "COMPLETED"]
        assert len(done) == 1, (Path(scan).stem, [(r["id"], r["state_name"]) for r in rs])
        assert all(r["state_type"] in FINAL for r in rs), [(r["id"], r["state_name"]) for r in rs]
        # a scan has a second run only when the first one was resubmitted
        assert len(rs) == 1 + sum(x["scan"] == Path(scan).stem for x in resubmitted)
    assert len(runs) == N_SCANS + len(resubmitted)

    # each store: every stage complete, recorded while a run of that scan held it
    import xarray as xr

    resumed: dict[str, list[str]] = {}  # stages a resubmission found done by the run it replaced
    for scan, rs in per_scan.items():
        name = Path(scan).stem
        ds = xr.open_zarr(out / name / "scan.zarr")
        stages = ds.attrs["stages"]
        assert all(stages.get(s, {}).get("status") == "complete" for s in STAGES), (name, stages)
        assert ds.denoised.shape == (1, 1, 2, 16, 16)
        done = next(r for r in rs if r["state_type"] == "COMPLETED")
        # stages finished before the completed run ended (seconds resolution)
        assert all(_ts(stages[s]["finished"]) <= _ts(done["end_time"]) + 1 for s in STAGES)
        assert (out / name / "report" / "metrics.json").exists()
        if len(rs) > 1:
            resumed[name] = [s for s in STAGES if _ts(stages[s]["finished"]) < _ts(done["start_time"])]

    completed = [r for r in runs if r["state_type"] == "COMPLETED"]
    minutes = (t_done - t0) / 60
    measured = [w for w in waits.values() if w is not None]
    result = {
        "scans": N_SCANS, "workers": 2, "worker_limit": 2, "deployment_concurrency_limit": 4,
        "database": f"PostgreSQL {_pg_version(pg_service['postgres'])}", "prefect": _prefect_version(),
        "scan": "foam 16x16x2, 16 angles; msd depth 2 width 1; 1 epoch",
        "submit_s": round(submit_s, 2), "wall_s": round(t_done - t0, 1),
        "runs_per_minute": round(len(completed) / minutes, 2),
        "longest_queue_wait_s": round(max(measured), 1), "median_queue_wait_s": round(sorted(measured)[len(measured) // 2], 1),
        "killed_worker": killed, "resubmitted": resubmitted, "resumed_stages": resumed, "flow_runs": len(runs),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "scripts/test -q -m postgres tests/service/test_postgres_load.py -s",
    }
    bench = REPO / "bench-output"
    bench.mkdir(exist_ok=True)
    (bench / "postgres_load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\npostgres load: {len(completed)} scans in {result['wall_s']} s = {result['runs_per_minute']} runs/min; "
          f"longest queue wait (scheduled -> running) {result['longest_queue_wait_s']} s; "
          f"{len(resubmitted)} resubmitted after the worker kill -> bench-output/postgres_load.json")


def _pg_version(pg) -> str:
    import re

    out = subprocess.run([str(pg.bindir / "postgres"), "--version"], capture_output=True, text=True)
    found = re.search(r"\d+\.\d+", out.stdout)  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    return found.group(0) if found else "?"


def _prefect_version() -> str:
    import prefect

    return prefect.__version__


def _locked_section(http: httpx.Client, run_id: str) -> tuple[float, float]:
    """[start of the run's first subflow, end of its last subflow or task]: inside the store lock."""
    subs = http.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}
                     ).raise_for_status().json()
    tasks = http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).raise_for_status().json()
    assert len(subs) >= 4, [s["name"] for s in subs]  # ingest, reconstruct, train, denoise
    starts = [_ts(s["start_time"]) for s in subs if s["start_time"]]
    ends = [_ts(x["end_time"]) for x in subs + tasks if x["end_time"]]
    return min(starts), max(ends)


def test_one_scan_submitted_twice_runs_one_at_a_time(pg_service):
    """The store lock: the second run waits for the first, then finds every stage complete."""
    import xarray as xr

    server, raw, out = pg_service["server"], pg_service["raw"], pg_service["out"]
    scan = simulate_foam_scan(raw / "twice.h5", size=16, n_angles=16, n_slices=2, i0=200.0, seed=99,
                              n_spheres=10)["scan"]
    with Client(server.url) as api, _http(server) as http:
        ids = [api.start_run(scan, overrides=TINY), api.start_run(scan, overrides=TINY)]
        finals = [api.wait(i, timeout=300) for i in ids]
        assert [f["state"] for f in finals] == ["COMPLETED", "COMPLETED"], (finals, pg_service["workers"].tails())
        sections = sorted((_locked_section(http, i), i) for i in ids)
        (a0, a1), first = sections[0]
        (b0, b1), second = sections[1]
        assert a1 <= b0, f"the two runs of one scan overlapped inside the lock: {sections}"
        # both were RUNNING at once (so the lock, not the queue, kept them apart) ...
        runs = {i: http.get(f"/flow_runs/{i}").raise_for_status().json() for i in ids}
        both_running = _ts(runs[second]["start_time"]) < a1
        logs = http.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [second]}}, "limit": 200}
                         ).raise_for_status().json()
        waited = any("waiting for it to finish" in entry["message"] for entry in logs)
        assert waited == both_running, (both_running, [e["message"] for e in logs][-20:])
    # ... and the second saw the first's results: no stage was redone after the first ended
    stages = xr.open_zarr(out / "twice" / "scan.zarr").attrs["stages"]
    assert all(_ts(stages[s]["finished"]) <= a1 + 1 for s in STAGES), (stages, a1, b0)
    print(f"\nsame scan twice: first locked {a1 - a0:.1f} s, second waited "
          f"{b0 - _ts(runs[second]['start_time']):.1f} s for the lock (both running at once: {both_running})")
