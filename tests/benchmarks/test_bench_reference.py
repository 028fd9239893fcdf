"""Our training loop against the reference-style loop (benchmarks/reference.py), tiny."""

import json
import math

import pytest

from benchmarks.reference import run_reference_benchmark


def test_reference_benchmark_records_both_curves_and_the_ratio(tmp_path, tiny_foam, tiny_unet):
    rec = run_reference_benchmark(tmp_path, n_slices=4, minutes=0.05, setup=tiny_unet, progress=False, **tiny_foam)
    data = json.loads((tmp_path / "reference.json").read_text())
    assert data["reference"]["steps"] > 0 and data["ours"]["steps"] > 0
    ref_curve = data["reference"]["curve"]
    assert ref_curve and all(math.isfinite(p["psnr"]) for p in ref_curve)
    assert data["reference_best_psnr"] == max(p["psnr"] for p in ref_curve)
    # the reference-style loop read its items from a Zarr store, not from memory
    assert (tmp_path / "reference_store.zarr").is_dir()
    if data["ours_seconds_to_reference_best"] is not None:
        assert rec["speedup"] == pytest.approx(data["reference_seconds_to_best"] / data["ours_seconds_to_reference_best"])
    assert (tmp_path / "reference.png").stat().st_size > 0
    assert rec["command"].startswith("python -m benchmarks reference --slices 4 ")
