"""tomodenoise.hpc.jobs and the watch over a run's worker jobs (tomodenoise.hpc.watch), with SLURM's
commands faked: what each job state leads to, and when."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time

import pytest

from tomodenoise.hpc import jobs as slurm
from tomodenoise.hpc.jobs import Job, SlurmError, SlurmRequestError
from tomodenoise.hpc.watch import MISSING_POLLS, JobWatch, watched_job_class


def _fake_command(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_a_refused_job_script_is_a_request_error_with_slurms_reason(fake_bin):
    _fake_command(fake_bin, "sbatch", 'cat >/dev/null; echo "sbatch: error: Invalid generic resource (gres) '
                                      'specification" >&2; exit 1')
    with pytest.raises(SlurmRequestError, match=r"SLURM refuses the job script \(Invalid generic resource \(gres\) "
                                                r"specification\): no job was submitted") as caught:
        slurm.test_submit("#!/bin/sh\n#SBATCH --gres=gpux:1\n")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SlurmError)  # CLI exit status 2
    assert "\n" not in str(caught.value)


def test_an_accepted_job_script_passes(fake_bin):
    _fake_command(fake_bin, "sbatch", 'cat >/dev/null; echo "sbatch: Job 3 to start at now" >&2; exit 0')
    slurm.test_submit("#!/bin/sh\n")


def test_jobs_reads_squeue_then_scontrol_for_the_jobs_squeue_dropped(fake_bin):
    _fake_command(fake_bin, "squeue", 'echo "11|RUNNING|None|w"; echo "12|PENDING|PartitionConfig|w"')
    _fake_command(fake_bin, "scontrol", 'if [ "$4" = 13 ]; then echo "JobId=13 JobName=w JobState=TIMEOUT '
                                        'Reason=TimeLimit"; else echo "slurm_load_jobs error: Invalid job id '
                                        'specified" >&2; exit 1; fi')
    found = slurm.jobs(["11", "12", "13", "14"])
    assert found["11"] == Job("11", "RUNNING", None, "w")
    assert found["12"] == Job("12", "PENDING", "PartitionConfig", "w")
    assert found["13"] == Job("13", "TIMEOUT", "TimeLimit", "w")
    assert "14" not in found  # forgotten by the controller


def test_a_controller_that_does_not_answer_is_an_error_not_an_empty_queue(fake_bin):
    """squeue timing out must not read as "every job is gone" (the watch would count them lost)."""
    _fake_command(fake_bin, "squeue", 'echo "squeue: error: Socket timed out on send/recv operation" >&2; exit 1')
    with pytest.raises(SlurmError, match="squeue failed: squeue: error: Socket timed out"):
        slurm.jobs(["11"])
    _fake_command(fake_bin, "squeue", "exit 0")
    _fake_command(fake_bin, "scontrol", 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1')
    with pytest.raises(SlurmError, match="scontrol show job 11 failed"):
        slurm.jobs(["11"])


@pytest.mark.parametrize("state, says", [("CANCELLED by 0", "cancelled"), ("TIMEOUT", "longer walltime"),
                                         ("OUT_OF_MEMORY", "compute.slurm.memory"), ("NODE_FAIL", "node failed"),
                                         ("WEIRD", "its log says why")])
def test_each_lost_state_has_its_remedy(state, says):
    assert says in slurm.lost_remedy(state)


class Queue:
    """A fake controller: ``states[job id]`` is what ``squeue`` says now (absent: forgotten)."""

    def __init__(self):
        self.states: dict[str, Job] = {}
        self.reads = 0
        self.fail = False

    def __call__(self, ids):
        self.reads += 1
        if self.fail:
            raise SlurmError("squeue timed out")
        return {i: self.states[i] for i in ids if i in self.states}

    def set(self, jid, state, reason=None):
        self.states[jid] = Job(jid, state, reason, "w")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _watch(**kw):
    queue, clock, replaced = Queue(), Clock(), []
    watch = JobWatch(read=queue, clock=clock, replace=lambda name, jid: replaced.append((name, jid)), **kw)
    return watch, queue, clock, replaced


def test_a_job_pending_for_a_reason_that_cannot_clear_fails_the_run_after_hopeless_after():
    watch, queue, clock, _ = _watch(hopeless_after=15)
    watch.submitted_job("w-0", "7")
    queue.set("7", "PENDING", "PartitionTimeLimit")
    watch.poll_once()
    clock.t = 10
    watch.poll_once()
    watch.check()  # not yet: a reason must last hopeless_after
    clock.t = 15
    watch.poll_once()
    with pytest.raises(SlurmRequestError) as caught:
        watch.check()
    msg = str(caught.value)
    assert msg.startswith("SLURM job 7 pending: PartitionTimeLimit: the time limit exceeds the partition's MaxTime")
    assert "\n" not in msg and isinstance(caught.value, ValueError)


def test_a_queue_wait_is_not_an_error_and_a_reason_that_clears_starts_the_count_again():
    watch, queue, clock, _ = _watch(hopeless_after=15)
    watch.submitted_job("w-0", "7")
    for t, (state, reason) in enumerate([("PENDING", "Resources"), ("PENDING", "PartitionConfig"),
                                         ("PENDING", "Priority"), ("PENDING", "PartitionConfig")]):
        queue.set("7", state, reason)
        clock.t = t * 10.0
        watch.poll_once()
    watch.check()
    for t in (100, 200, 300):  # the other reasons wait as long as they take
        queue.set("7", "PENDING", "Resources")
        clock.t = t
        watch.poll_once()
    watch.check()


def test_a_lost_job_is_one_warning_and_is_replaced_after_replace_after(caplog):
    watch, queue, clock, replaced = _watch(replace_after=25)
    watch.submitted_job("w-0", "7")
    watch.submitted_job("w-1", "8")
    queue.set("7", "RUNNING")
    queue.set("8", "RUNNING")
    watch.poll_once()
    queue.set("7", "CANCELLED")
    clock.t = 5
    with caplog.at_level(logging.INFO, logger="tomodenoise.hpc.watch"):
        watch.poll_once()
        clock.t = 10
        watch.poll_once()  # said once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("SLURM job 7 (Dask worker w-0) ended CANCELLED before the run did: it was cancelled")
    assert "a new job is submitted" in warnings[0] and "\n" not in warnings[0]
    assert replaced == []
    clock.t = 30
    watch.poll_once()
    assert replaced == [("w-0", "7")]
    watch.check()  # the run goes on
    assert watch.lost == [("7", "CANCELLED")]


def test_a_timeout_names_the_walltime_is_replaced_and_not_counted_more_than_max_lost_jobs_fail_the_run(caplog):
    watch, queue, clock, _ = _watch(max_lost=3)
    with caplog.at_level(logging.WARNING, logger="tomodenoise.hpc.watch"):
        for n in range(3):  # time limits: a warning each, the run goes on (Dask bounds a task's retries)
            jid = str(10 + n)
            watch.submitted_job(f"w-{n % 2}", jid)
            queue.set(jid, "TIMEOUT", "TimeLimit")
            clock.t += 5
            watch.poll_once()
            watch.check()
        for n in range(4):
            jid = str(20 + n)
            watch.submitted_job(f"w-{n % 2}", jid)
            queue.set(jid, "NODE_FAIL", "NodeDown")
            clock.t += 5
            watch.poll_once()
            if n < 3:
                watch.check()
    assert "ended TIMEOUT (TimeLimit) before the run did: it reached its time limit: ask for a longer walltime " \
           "(compute.slurm.walltime)" in caplog.records[0].getMessage()
    with pytest.raises(SlurmError, match=r"^4 Dask worker jobs of this run ended before it did \(the last: SLURM job "
                                         r"23, NODE_FAIL \(NodeDown\)\)"):
        watch.check()


def test_a_job_the_controller_forgot_counts_as_ended_only_after_a_few_polls():
    watch, queue, clock, _ = _watch()
    watch.submitted_job("w-0", "7")
    queue.set("7", "RUNNING")
    watch.poll_once()
    del queue.states["7"]
    for _ in range(MISSING_POLLS - 1):
        watch.poll_once()
    assert watch.lost == []
    watch.poll_once()
    assert watch.lost == [("7", "gone (no longer known to SLURM)")]


def test_a_controller_that_does_not_answer_changes_nothing():
    watch, queue, clock, _ = _watch(hopeless_after=0)
    watch.submitted_job("w-0", "7")
    queue.fail = True
    for t in range(5):
        clock.t = t * 100
        watch.poll_once()
    watch.check()
    assert watch.lost == []


def test_no_job_within_submit_timeout_fails_the_run():
    watch, queue, clock, _ = _watch(submit_timeout=60)
    clock.t = 59
    watch.poll_once()
    watch.check()
    clock.t = 60
    watch.poll_once()
    with pytest.raises(SlurmError, match="^no SLURM job was submitted for the Dask workers within 60 s"):
        watch.check()
    assert queue.reads == 0


def test_the_thread_polls_until_stopped():
    queue = Queue()
    watch = JobWatch(read=queue, poll=0.02, hopeless_after=0.0)
    watch.submitted_job("w-0", "7")
    queue.set("7", "PENDING", "PartitionConfig")
    watch.start()
    try:
        t_end = time.monotonic() + 5
        while watch.error is None and time.monotonic() < t_end:
            time.sleep(0.01)
    finally:
        watch.stop()
    with pytest.raises(SlurmRequestError, match="^SLURM job 7 pending: PartitionConfig: "):
        watch.check()
    reads = queue.reads
    time.sleep(0.1)
    assert queue.reads == reads  # stopped


def _job(cls):
    return cls(scheduler="tcp://127.0.0.1:8786", name="SLURMCluster-0", cores=1, memory="1GB",
               log_directory=None, job_name="tdn")


def test_the_job_class_reports_each_submitted_job(monkeypatch):
    watch = JobWatch()
    job = _job(watched_job_class(watch))

    async def submitted(self, script_filename):
        return "Submitted batch job 4242\n"

    monkeypatch.setattr(type(job), "_submit_job", submitted)
    asyncio.run(job.start())
    assert watch.submitted == [("SLURMCluster-0", "4242")]
    assert watch.job_ids == ["4242"]


def test_the_job_class_reports_sbatchs_refusal_in_one_line(monkeypatch):
    watch = JobWatch()
    job = _job(watched_job_class(watch))

    async def refused(self, script_filename):
        raise RuntimeError("Command exited with non-zero exit code.\nExit code: 1\nCommand:\nsbatch x.sh\nstdout:\n\n"
                           "stderr:\nsbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission "
                           "failed: Job violates accounting/QOS policy\n")

    monkeypatch.setattr(type(job), "_submit_job", refused)
    with pytest.raises(RuntimeError):
        asyncio.run(job.start())
    with pytest.raises(SlurmError) as caught:
        watch.check()
    assert str(caught.value).startswith("sbatch could not submit the Dask worker job SLURMCluster-0 "
                                        "(QOSMaxSubmitJobPerUserLimit; Batch job submission failed: Job violates "
                                        "accounting/QOS policy): no worker can start")


def test_a_job_that_completed_by_itself_is_replaced_but_not_counted_as_lost(caplog):
    watch, queue, clock, replaced = _watch(replace_after=25, max_lost=0)
    watch.submitted_job("w-0", "7")
    queue.set("7", "COMPLETED")
    with caplog.at_level(logging.INFO, logger="tomodenoise.hpc.watch"):
        watch.poll_once()
    watch.check()  # a worker's --lifetime ends its job: not a failure
    assert watch.lost == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    clock.t = 25
    watch.poll_once()
    assert replaced == [("w-0", "7")]
