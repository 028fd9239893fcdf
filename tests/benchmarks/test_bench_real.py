"""``run``'s defaults on a scan with the quality figures (benchmarks/real.py), on a tiny simulated scan."""

from benchmarks.real import run_real_benchmark


def test_bench_real_reports_the_quality_figures_of_runs_defaults(tmp_path, capsys):
    from tomodenoise.simulate.scan import simulate_foam_scan

    sim = simulate_foam_scan(tmp_path / "scan.h5", size=48, n_angles=96, n_slices=5, i0=200.0, seed=0, n_spheres=60)
    res = run_real_benchmark(tmp_path / "bench", [str(sim["scan"])], minutes=0.05,
                             overrides=["train.patch_size=32", "train.patches_per_slice=2"])
    row = res["scans"]["scan"]
    q = row["quality"]
    assert set(q["figures"]) >= {"contrast_kept", "edge_gradient_kept", "noise_removed"}
    assert q["heldout"]["network"] > 0 and q["heldout"]["gaussian"] < q["heldout"]["input"]
    assert row["meets"]["beats_gaussian"] == q["heldout"]["beats_gaussian"]
    assert row["budget"]["short"] is True  # 3 seconds of training: flagged
    assert set(row["meets"]) == {"contrast_kept", "edge_gradient_kept", "noise_removed", "beats_gaussian"}
    out = capsys.readouterr().out
    assert "| scan |" in out and "Reproduce:" in out
    assert res["meta"]["command"].startswith("python -m benchmarks real ")
    assert "--set train.patch_size=32" in res["meta"]["command"]
    assert (tmp_path / "bench" / "real.json").exists() and (tmp_path / "bench" / "results.md").exists()
