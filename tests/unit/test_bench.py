"""Smoke test of the foam benchmark machinery on a scaled-down geometry (seconds)."""

import json
import math

import pytest

from tomodenoise.bench import (
    ALL_METHODS,
    DEFAULT_METHODS,
    FoamGeometry,
    NetworkSetup,
    run_foam_benchmark,
)


def test_geometry_rows_are_centred():
    g = FoamGeometry()
    assert g.rows(1).tolist() == [256]
    rows = g.rows(8)
    assert rows.tolist() == list(range(252, 260)) and 256 in rows
    assert g.pixel_size == pytest.approx(2 / 512)
    z = g.z_positions(rows)
    assert z[0] < 0 < z[-1]
    with pytest.raises(ValueError):
        g.rows(0)


def test_tiny_benchmark(tmp_path, capsys):
    tiny = {
        "n2i_msd": NetworkSetup("msd", {"depth": 3, "width": 1}, patch_size=16, batch_size=4, patches_per_slice=1),
        "n2i_unet": NetworkSetup("unet", {"depth": 1, "base_channels": 4}, patch_size=16, batch_size=4,
                                 patches_per_slice=1),
    }
    kw = {"n_slices": 2, "phantom": "generate", "minutes": 0.03, "n_angles": 64, "n_det": 48, "n_rows": 32,
          "n_pixels": 32, "n_spheres": 30, "networks": tiny, "progress": False}
    m = run_foam_benchmark(tmp_path, **kw, methods=list(DEFAULT_METHODS) + ["n2i_msd", "n2i_unet"])
    data = json.loads((tmp_path / "metrics.json").read_text())
    for name in DEFAULT_METHODS:
        assert name in data, name
        for key in ("psnr", "ssim", "seconds"):
            assert math.isfinite(data[name][key]), (name, key)
    assert data["gaussian"]["psnr"] >= data["fbp"]["psnr"]
    assert data["tv"]["psnr"] >= data["fbp"]["psnr"] - 1e-6
    meta = data["meta"]
    assert meta["n_slices"] == 2 and meta["slice_indices"] == [15, 16]
    assert "generated" in meta["phantom"]
    assert meta["gaussian_sigma"] > 0 and meta["tv_weight"] > 0
    assert meta["published"]["n2i_msd"]["psnr"] == 21.33
    assert (tmp_path / "preview.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| n2i |" in out and "| n2i_msd" in out and "Reproduce:" in out and "Time to quality" in out
    run_defaults = meta["training"]["n2i"]  # `bench foam` measures what `run` trains by default
    assert run_defaults["run_defaults"] and run_defaults["model"] == "msd" and run_defaults["params"]["depth"] == 30
    assert run_defaults["neighbours"] == 0 and run_defaults["lr"] == 2e-3  # 2 slices: no neighbours
    assert (tmp_path / "time_to_quality.png").stat().st_size > 0
    for name in ("n2i_msd", "n2i_unet"):
        assert meta["training"][name]["curve"], name
        assert set(meta["summary"]["time_to_quality"][name]) >= {"psnr_5min", "seconds_to_classical_plus_4dB"}
    assert m["fbp"]["psnr"] == data["fbp"]["psnr"]

    # a re-run reuses the cached sinograms and reconstructions
    run_foam_benchmark(tmp_path, **{**kw, "methods": ["fbp", "gaussian"]})
    out = capsys.readouterr().out
    assert "sinograms: cached" in out and "reconstructions: cached" in out
    assert set(ALL_METHODS) >= {"fbp", "gaussian"}


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_foam_benchmark(tmp_path, n_slices=1, methods=["nope"], phantom="generate")


def _tiny_foam():
    from tomodenoise.bench import FoamGeometry

    return {"phantom": "generate", "geometry": FoamGeometry(n_angles=64, n_det=48, n_rows=32, n_pixels=32),
            "n_spheres": 30}


_TINY_UNET = NetworkSetup("unet", {"depth": 1, "base_channels": 4}, patch_size=16, batch_size=4, patches_per_slice=1)


def test_reference_benchmark_records_both_curves_and_the_ratio(tmp_path):
    from tomodenoise.bench import run_reference_benchmark

    rec = run_reference_benchmark(tmp_path, n_slices=4, minutes=0.05, setup=_TINY_UNET, progress=False, **_tiny_foam())
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


def test_warmstart_benchmark_starts_from_the_other_foams_model(tmp_path):
    from tomodenoise.bench import run_warmstart_benchmark

    rec = run_warmstart_benchmark(tmp_path, n_slices=4, minutes=0.05, source_minutes=0.03, warm_minutes=0.03,
                                  setup=_TINY_UNET, progress=False, source_spheres=30, **_tiny_foam())
    assert rec["warm"]["init_from"] == rec["source"]["checkpoint"]
    assert "seed=1" in rec["source"]["phantom"] and "seed=0" in rec["target"]
    assert rec["warm"]["curve"] and rec["cold"]["curve"]
    for key in ("psnr", "val_loss"):
        r = rec[key]
        assert r["cold_seconds"] is not None  # the cold run reaches its own final quality
        if r["warm_seconds"] is not None:
            assert r["fraction"] == pytest.approx(r["warm_seconds"] / r["cold_seconds"])
    assert (tmp_path / "warmstart.png").stat().st_size > 0


def test_profile_times_every_part_of_a_step(tmp_path, monkeypatch):
    from tomodenoise.bench import profile

    monkeypatch.setattr(profile, "default_network_setups", lambda: {"tiny": _TINY_UNET})
    rec = profile.run_profile(tmp_path, 4, repeats=2, **_tiny_foam())
    t = rec["networks"]["tiny"]["seconds"]
    assert set(t) == set(profile.PARTS) and all(v > 0 for v in t.values())


def test_bench_real_reports_the_quality_figures_of_runs_defaults(tmp_path, capsys):
    from tomodenoise.bench.real import run_real_benchmark
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
    assert (tmp_path / "bench" / "real.json").exists() and (tmp_path / "bench" / "results.md").exists()
