"""The DDP training benchmark (benchmarks/ddp.py) on tiny data."""

from benchmarks.ddp import format_report, run_ddp_benchmark


def test_the_ddp_benchmark_runs_on_tiny_data(tmp_path):
    f = run_ddp_benchmark(tmp_path, ranks=2, size=24, slices=3, epochs=2, patch=16,
                          params={"depth": 3, "width": 1})
    assert f["one_process"]["steps"] == f["2_ranks"]["steps"] > 0
    assert f["ratio_steps_per_s"] > 0 and (tmp_path / "ddp.json").exists()
    assert f["command"].startswith("python -m benchmarks ddp ") and "ratio 2 ranks" in format_report(f, 2)
