"""Inference options: tiles blended without seams, bf16 autocast, channels-last."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tomodenoise.denoise import denoise, forward, resolve_precision, tile_starts, tile_weights
from tomodenoise.models import build_model

NORM = {"mean": 0.5, "std": 2.0}


def _splits(k=4, z=3, ny=50, nx=37, seed=0):
    return np.random.default_rng(seed).normal(1.0, 0.3, size=(k, z, ny, nx)).astype(np.float32)


def _small_conv(seed=0):
    """Two 3x3 convolutions (zero padding): receptive-field radius 2."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1)).eval()


def _msd(depth, seed=0):
    """An MS-D network with random weights everywhere (its output layer starts at zero)."""
    torch.manual_seed(seed)
    model = build_model("msd", depth=depth, width=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def test_tiles_cover_the_slice_and_the_windows_never_sum_to_zero():
    for n, tile, overlap in [(50, 20, 16), (37, 20, 16), (64, 32, 8), (20, 20, 16), (17, 32, 8), (100, 16, 0)]:
        tw = tile_weights(n, tile, overlap)
        total = np.zeros(n)
        for start, w in tw:
            assert 0 <= start and start + len(w) <= n and len(w) == min(tile, n)
            total[start:start + len(w)] += w
        assert total.min() > 0.2, (n, tile, overlap, total.min())
        assert tw[0][1][0] == 1 and tw[-1][1][-1] == 1  # the slice's own borders are not faded
    assert tile_starts(50, 20, 16) == [0, 4, 8, 12, 16, 20, 24, 28, 30]
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_starts(50, 20, 20)
    with pytest.raises(ValueError, match="tile_overlap"):
        denoise(_small_conv(), _splits(), strategy="X:1", normalisation=NORM, tile=16, tile_overlap=16)


def test_tiled_output_equals_the_whole_slice_when_the_overlap_exceeds_the_receptive_field():
    model, s = _small_conv(), _splits()
    whole = denoise(model, s, strategy="X:1", normalisation=NORM)
    tiled = denoise(model, s, strategy="X:1", normalisation=NORM, tile=20, tile_overlap=16)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
    # too small an overlap for the receptive field: close, not equal (the blend hides the seams)
    rough = denoise(model, s, strategy="X:1", normalisation=NORM, tile=20, tile_overlap=2)
    assert not np.allclose(rough, whole, atol=1e-5)
    assert np.abs(rough - whole).mean() < 0.1 * np.abs(whole).mean()


def test_tiles_blend_smoothly_for_a_network_with_a_large_receptive_field():
    model = _msd(6)
    s = _splits(ny=48, nx=48)
    whole = denoise(model, s, strategy="X:1", normalisation=NORM)
    tiled = denoise(model, s, strategy="X:1", normalisation=NORM, tile=32, tile_overlap=16)
    assert tiled.shape == whole.shape and np.isfinite(tiled).all()
    assert whole.std() > 0.01  # the network does something
    np.testing.assert_allclose(tiled, whole, atol=0.05 * float(np.abs(whole).max()))


def test_bf16_runs_on_cpu_when_asked_and_auto_is_fp32_on_cpu():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")
    for model in (_small_conv(), _msd(4)):
        s = _splits(ny=24, nx=24)
        fp32 = denoise(model, s, strategy="X:1", normalisation=NORM)
        auto = denoise(model, s, strategy="X:1", normalisation=NORM, precision="auto")
        np.testing.assert_array_equal(auto, fp32)
        bf16 = denoise(model, s, strategy="X:1", normalisation=NORM, precision="bf16")
        assert bf16.dtype == np.float32
        assert not np.array_equal(bf16, fp32)  # it really ran in bf16
        np.testing.assert_allclose(bf16, fp32, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name,params", [("msd", {"depth": 3}), ("dncnn", {"depth": 3, "features": 4}),
                                         ("unet", {"depth": 2, "base_channels": 4})])
def test_channels_last_gives_the_same_output(name, params):
    torch.manual_seed(0)
    model = build_model(name, **params).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        a = forward(model, x)
        b = forward(model.to(memory_format=torch.channels_last), x, channels_last=True)
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5)
