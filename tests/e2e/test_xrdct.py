"""A simulated XRD-CT scan through the whole pipeline: one network over all channels with
per-channel normalisation, per-channel metrics and spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomodenoise import pipeline
from tomodenoise.config import RunConfig
from tomodenoise.simulate.xrdct_phantom import simulate_xrdct_scan


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("xrdct")
    return simulate_xrdct_scan(d / "x.h5", size=32, n_angles=60, n_channels=12, counts=30.0, seed=2)


def _cfg(scan, out, **train):
    return RunConfig.model_validate({
        "input": {"path": str(scan["scan"])},
        "splits": {"k": 4},
        "model": {"name": "msd", "params": {"depth": 6, "width": 1}},
        "train": {"epochs": 40, "batch_size": 4, "patch_size": 16, "patches_per_slice": 1, "lr": 3e-3, "early_stopping": 0,
                  "progress": False, **train},
        "output": {"root": str(out), "previews": 1},
    })


def test_an_xrdct_scan_runs_end_to_end_over_all_channels(scan, tmp_path):
    store = pipeline.run(_cfg(scan, tmp_path), reference=np.load(scan["reference"]), progress=False)
    ds = store.open()
    assert store.attrs["modality"] == "xrdct"
    assert ds.recon.shape == (4, 1, 12, 1, 32, 32) and ds.denoised.shape == (1, 12, 1, 32, 32)
    assert np.allclose(ds["channel"].values, scan["channels"]) and ds["channel"].attrs["long_name"] == "q"
    # unsorted 360-degree angles were sorted once for all channels
    a = store.angles_of(0)
    assert np.all(np.diff(a) > 0) and np.ptp(a) > 1.9 * np.pi
    assert len(store.attrs["preprocess"]["projection_order"]) == 60
    scales = store.attrs["channel_normalisation"]
    assert len(scales["std"]) == 12 and max(scales["std"]) / min(scales["std"]) > 3  # channels span a range
    metrics = json.loads((store.report_dir / "metrics.json").read_text())
    assert len(metrics["per_channel"]) == 12
    q = metrics["quality"]  # the quality check on stacked volumes: the middle volume's figures, held-out losses
    assert q["status"] in ("ok", "below_baseline") and q["heldout"]["network"] > 0
    assert set(q["figures"]) >= {"contrast_kept", "edge_gradient_kept", "noise_removed"}
    assert q["figures"]["edge_gradient_kept"] is not None and q["figures"]["edge_gradient_kept"] > 0
    assert metrics["denoised"]["psnr"] > metrics["fbp"]["psnr"] + 1.0
    assert metrics["denoised"]["psnr_mean_over_channels"] > metrics["fbp"]["psnr_mean_over_channels"]
    assert (store.report_dir / "spectra.png").exists() and (store.report_dir / "channel_maps.png").exists()
    assert store.stage_info("reconstruct")["chunks"] == 4 * 12


def test_channel_neighbours_and_the_per_channel_scale_round_trip(scan, tmp_path):
    import torch

    cfg = _cfg(scan, tmp_path, neighbours=1, neighbour_axis="channel", epochs=2)
    store = pipeline.run(cfg, progress=False)
    meta = torch.load(store.model_dir / "best.pt", weights_only=True)
    assert meta["train_config"]["neighbour_axis"] == "channel" and meta["model"]["params"]["in_channels"] == 3
    # A network that passes its centre channel through: X:1 inference then averages the K
    # leave-one-out means, which is the FBP; so normalising each channel, taking channel
    # neighbours and denormalising must give back each channel's FBP exactly.
    ident = torch.nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        ident.weight.zero_()
        ident.weight[0, 1] = 1.0
    scales = store.attrs["channel_normalisation"]
    fbp = np.asarray(store.array("recon")[:, 0, :, 0]).mean(axis=0)
    for c in (0, 5, 11):
        out = pipeline.denoise_block(store, ident, meta, 0, c, slice(0, 1), batch_size=4, device="cpu", scales=scales)
        assert np.allclose(out[0], fbp[c], rtol=1e-4, atol=1e-4 * np.abs(fbp[c]).max())
