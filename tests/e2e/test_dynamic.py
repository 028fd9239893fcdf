"""A simulated dynamic (4D) scan through the whole pipeline: time steps cut from a continuous-
rotation stream, splits within each step, one network over all steps, per-step metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import RunConfig
from tomodenoise.recon import fbp
from tomodenoise.simulate.dynamic import simulate_dynamic_scan
from tomodenoise.splits import split_indices


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("dynamic")
    return simulate_dynamic_scan(d / "dyn.h5", size=32, n_slices=2, n_steps=3, projections_per_step=40.5,
                                 i0=2000.0, seed=3)


def _cfg(scan, out, **train):
    return RunConfig.model_validate({
        "input": {"path": str(scan["scan"])},
        "time": {"window": "angle", "span_deg": 180},
        "splits": {"k": 4},
        "recon": {"z_chunk": 1},
        "model": {"name": "msd", "params": {"depth": 6, "width": 1}},
        "train": {"epochs": 40, "batch_size": 4, "patch_size": 16, "patches_per_slice": 1, "lr": 3e-3, "early_stopping": 0,
                  "val_fraction": 0.2, "progress": False, **train},
        "output": {"root": str(out), "previews": 1},
    })


def test_a_dynamic_scan_runs_end_to_end_with_splits_within_each_time_step(scan, tmp_path):
    cfg = _cfg(scan, tmp_path)
    store = pipeline.run(cfg, reference=np.load(scan["reference"]), progress=False)
    ds = store.open()
    assert store.attrs["modality"] == "dynamic"
    assert dict(ds.sizes)["time"] == 3 and ds.recon.shape == (4, 3, 1, 2, 32, 32)
    assert ds.denoised.shape == (3, 1, 2, 32, 32)
    # the time coordinate is in seconds and near the window centres of the simulation
    assert ds["time"].attrs["units"] == "s"
    assert np.allclose(ds["time"].values, scan["times"], atol=0.1 / 40)
    counts = [store.angles_of(t).size for t in range(3)]
    assert sorted(set(counts)) == [40, 41] and sum(counts) == int(3 * 40.5)
    # split j of step t is the FBP of that step's projections j, j+4, ... only
    geom = store.attrs["geometry"]
    for t in range(3):
        a = store.angles_of(t)
        sino = store.array("sinogram")[t, 0, :, : a.size]
        idx = split_indices(a.size, 4)[1]
        want = fbp(sino[:, idx], a[idx], center=geom["center"], n_pixels=geom["n_pixels"], use_gpu="no")
        assert np.allclose(store.array("recon")[1, t, 0], want, atol=1e-5)
    # successive steps are interlaced: their angles differ modulo one rotation
    a0, a1 = np.mod(store.angles_of(0), np.pi), np.mod(store.angles_of(1), np.pi)
    assert np.min(np.abs(a1[:, None] - a0[None, :])) > 1e-3
    metrics = json.loads((store.report_dir / "metrics.json").read_text())
    assert len(metrics["per_time"]) == 3
    q = metrics["quality"]  # the quality check on stacked volumes: the middle volume's figures, held-out losses
    assert q["status"] in ("ok", "below_baseline") and q["heldout"]["network"] > 0
    assert set(q["figures"]) >= {"contrast_kept", "edge_gradient_kept", "noise_removed"}
    assert q["figures"]["edge_gradient_kept"] is not None and q["figures"]["edge_gradient_kept"] > 0
    assert metrics["denoised"]["psnr"] > metrics["fbp"]["psnr"] + 1.0
    assert (store.report_dir / "time_strip.png").exists()
    # reconstruct ran one chunk per (split, time step, z-slab)
    assert store.stage_info("reconstruct")["chunks"] == 4 * 3 * 2


def test_time_neighbours_are_extra_input_channels(scan, tmp_path):
    import torch

    cfg = _cfg(scan, tmp_path, neighbours=1, neighbour_axis="time", epochs=3)
    store = pipeline.run(cfg, progress=False)
    meta = torch.load(store.model_dir / "best.pt", weights_only=True)
    assert meta["train_config"]["neighbour_axis"] == "time"
    assert meta["model"]["params"]["in_channels"] == 3
    den = np.asarray(store.array("denoised")[:])
    assert np.isfinite(den).all() and den.std() > 0


def test_time_windows_without_time_stamps_are_refused_with_the_remedy(scan, tmp_path):
    import h5py

    path = tmp_path / "no_stamps.h5"
    with h5py.File(scan["scan"], "r") as src, h5py.File(path, "w") as dst:
        for name in ("exchange/data", "exchange/data_white", "exchange/data_dark", "exchange/theta"):
            src.copy(src[name], dst.require_group("exchange"), name.split("/")[1])
    cfg = _cfg({"scan": path}, tmp_path).with_overrides({"time": {"window": "time", "seconds": 0.1}})
    with pytest.raises(ValueError, match="time stamps"):
        pipeline.ingest(cfg)
