"""Smoke test of the inference benchmark (``python -m benchmarks inference``) on tiny sizes (no speed assertions)."""

from __future__ import annotations

import json

from benchmarks.__main__ import main


def test_inference_benchmark_runs_on_tiny_sizes(tmp_path, capsys):
    rc = main(["inference", "--out", str(tmp_path), "--store-size", "16", "--store-slices", "4", "--speed-size", "32",
               "--speed-slices", "1", "--depth", "2", "--device", "cpu"])
    assert rc == 0
    res = json.loads((tmp_path / "inference.json").read_text())
    a, b = res["sharded"], res["speed"]
    assert [r["workers"] for r in a["runs"]] == [1, 2]
    assert all(r["equals_single_process"] and r["chunks"] == 2 for r in a["runs"])
    assert a["speedup_2_vs_1"] > 0 and b["slices_per_s"] > 0 and b["precision"] == "fp32"
    assert "open" in b["gpu_target"]
    assert b["k"] == 4
    out = capsys.readouterr().out
    assert "1 / 2 workers" in out and "slices/s" in out
