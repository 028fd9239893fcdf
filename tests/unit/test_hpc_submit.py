"""Sizing a SLURM request from sinfo's nodes and the run configuration, and watching a job
(``tomodenoise.hpc.submit``), with SLURM's answers faked; tests/hpc/ runs them for real."""

from __future__ import annotations

import pytest

from tomodenoise.config import RunConfig
from tomodenoise.hpc import submit
from tomodenoise.hpc.submit import Node, gpus_of, size_request
from tomodenoise.hpc.jobs import Job, SlurmError

GPU_NODE = Node("g1", cpus=64, memory_mb=256000, gpus=4)


def _cfg(**train) -> RunConfig:
    return RunConfig.model_validate({"train": train})


def test_gpus_in_sinfo_gres():
    assert gpus_of("gpu:4") == 4
    assert gpus_of("gpu:a100:4(S:0-1)") == 4
    assert gpus_of("gpu:a100:2,gpu:v100:1") == 3
    assert gpus_of("(null)") == 0 and gpus_of("mps:100") == 0


def test_ranks_on_gpus_or_cpus():
    r = size_request(_cfg(ranks="auto"), "gpu", [GPU_NODE, Node("g2", 32, 128000, 8)])
    assert (r.gpus_per_node, r.ranks_per_node, r.cpus_per_task) == (4, 4, 32)  # the smallest node fits
    assert "--gpus-per-node=4" in r.sbatch_args() and "--cpus-per-task=32" in r.sbatch_args()
    cpu = size_request(_cfg(ranks=2, device="cpu"), "gpu", [GPU_NODE], cpus=8)
    assert (cpu.gpus_per_node, cpu.ranks_per_node, cpu.cpus_per_task) == (0, 2, 8)
    assert cpu.mem == f"{256000 * 8 // 64}M"  # the node's memory in proportion to its CPUs
    assert cpu.env()["TOMODENOISE_RANKS_PER_NODE"] == "2"
    two = size_request(_cfg(ranks=6), "gpu", [GPU_NODE, GPU_NODE], n_nodes=2)
    assert (two.nodes, two.ranks_per_node, two.gpus_per_node) == (2, 3, 3)
    whole = size_request(_cfg(ranks=2), "gpu", [GPU_NODE], whole_gpus=True)  # the pipeline: a worker per GPU
    assert (whole.gpus_per_node, whole.workers_per_node, whole.ranks_per_node) == (4, 4, 2)


@pytest.mark.parametrize("cfg, nodes, n, said", [
    (_cfg(ranks=8), [GPU_NODE], 1, "train.ranks = 8 needs 8 GPUs per node"),
    (_cfg(device="cuda"), [Node("c1", 8, 16000, 0)], 1, "have no GPUs"),
    (_cfg(), [GPU_NODE], 2, "--nodes 2 but partition p has 1 usable node"),
])
def test_requests_no_node_can_run_are_refused(cfg, nodes, n, said):
    with pytest.raises(SlurmError, match=said):
        size_request(cfg, "p", nodes, n_nodes=n)


def test_a_job_pending_for_a_hopeless_reason_is_cancelled_in_one_sentence(monkeypatch):
    cancelled = []
    monkeypatch.setattr(submit, "HOPELESS_GRACE_S", 0.05)
    monkeypatch.setattr(submit, "jobs", lambda ids: {"7": Job("7", "PENDING", "PartitionConfig")})
    monkeypatch.setattr(submit, "_run", lambda cmd, **kw: cancelled.append(cmd))
    with pytest.raises(SlurmError) as e:
        submit.watch("7", poll=0.01, say=lambda s: None)
    assert "Reason=PartitionConfig" in str(e.value) and "it was cancelled" in str(e.value)
    assert cancelled == [["scancel", "7"]] and "\n" not in str(e.value)


def test_a_job_pending_for_resources_is_left_queued(monkeypatch):
    said = []
    monkeypatch.setattr(submit, "jobs", lambda ids: {"8": Job("8", "PENDING", "Resources")})
    monkeypatch.setattr(submit, "job_details", lambda j: {})
    submit.watch("8", start_within=0.05, poll=0.01, say=said.append)
    assert said and "still pending (Resources)" in said[-1] and "stays queued" in said[-1]


def test_a_failed_job_names_its_state_and_log(monkeypatch, tmp_path):
    log = tmp_path / "job.log"
    log.write_text("starting\nValueError: bad config\n")
    monkeypatch.setattr(submit, "jobs", lambda ids: {"9": Job("9", "FAILED", "NonZeroExitCode")})
    monkeypatch.setattr(submit, "job_details", lambda j: {"StdOut": str(log), "ExitCode": "1:0"})
    with pytest.raises(SlurmError, match=r"job 9 ended FAILED \(exit code 1:0, NonZeroExitCode\): see its log .*"
                                         r"its last line: ValueError: bad config"):
        submit.watch("9", wait=True, poll=0.01, say=lambda s: None)
