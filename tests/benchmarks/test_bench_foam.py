"""The foam benchmark (benchmarks/foam.py) on a scaled-down geometry (seconds)."""

import json
import math

import pytest

from benchmarks.common import FoamGeometry
from benchmarks.foam import foam_command, run_foam_benchmark
from benchmarks.foam_report import ALL_METHODS, DEFAULT_METHODS
from benchmarks.n2i import NetworkSetup


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
    assert meta["command"].startswith("python -m benchmarks foam --slices 2 ")
    assert (tmp_path / "preview.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| n2i |" in out and "| n2i_msd" in out and "Reproduce:" in out and "Time to quality" in out
    run_defaults = meta["training"]["n2i"]  # `foam` measures what `run` trains by default
    assert run_defaults["run_defaults"] and run_defaults["model"] == "msd" and run_defaults["params"]["depth"] == 30
    assert run_defaults["neighbours"] == 0 and run_defaults["lr"] == 2e-3  # 2 slices: no neighbours
    assert (tmp_path / "time_to_quality.png").stat().st_size > 0
    for name in ("n2i_msd", "n2i_unet"):
        assert meta["training"][name]["curve"], name
        assert set(meta["summary"]["time_to_quality"][name]) >= {"psnr_5min", "seconds_to_classical_plus_4dB"}
    assert m["fbp"]["psnr"] == data["fbp"]["psnr"]
    assert list(data) == ["fbp", "split", "gaussian", "tv", "n2i", "n2i_msd", "n2i_unet", "meta"]

    # a re-run reuses the cached sinograms and reconstructions
    run_foam_benchmark(tmp_path, **{**kw, "methods": ["fbp", "gaussian"]})
    out = capsys.readouterr().out
    assert "sinograms: cached" in out and "reconstructions: cached" in out
    assert set(ALL_METHODS) >= {"fbp", "gaussian"}


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        run_foam_benchmark(tmp_path, n_slices=1, methods=["nope"], phantom="generate")


def test_the_recorded_command_is_the_one_way_to_run_it(tmp_path):
    cmd = foam_command(tmp_path, 16, 15.0, None, ["fbp", "gaussian"])
    assert cmd == f"python -m benchmarks foam --slices 16 --out {tmp_path} --minutes 15 --methods fbp gaussian"
    assert foam_command(tmp_path, 8, 2.5, "generate", DEFAULT_METHODS).endswith("--minutes 2.5 --phantom generate")
