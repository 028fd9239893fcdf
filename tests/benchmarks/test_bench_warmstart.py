"""Warm start from another foam against a cold start (benchmarks/warmstart.py), tiny."""

import pytest

from benchmarks.warmstart import run_warmstart_benchmark


def test_warmstart_benchmark_starts_from_the_other_foams_model(tmp_path, tiny_foam, tiny_unet):
    rec = run_warmstart_benchmark(tmp_path, n_slices=4, minutes=0.05, source_minutes=0.03, warm_minutes=0.03,
                                  setup=tiny_unet, progress=False, source_spheres=30, **tiny_foam)
    assert rec["warm"]["init_from"] == rec["source"]["checkpoint"]
    assert "seed=1" in rec["source"]["phantom"] and "seed=0" in rec["target"]
    assert rec["warm"]["curve"] and rec["cold"]["curve"]
    for key in ("psnr", "val_loss"):
        r = rec[key]
        assert r["cold_seconds"] is not None  # the cold run reaches its own final quality
        if r["warm_seconds"] is not None:
            assert r["fraction"] == pytest.approx(r["warm_seconds"] / r["cold_seconds"])
    assert (tmp_path / "warmstart.png").stat().st_size > 0
