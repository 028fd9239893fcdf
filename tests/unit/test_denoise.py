"""Inference: K leave-one-out inputs, K outputs averaged; never the full-data reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.denoise import denoise, denoise_checkpoint
from tomodenoise.models import build_model
from tomodenoise.train import train_n2i


class Identity(nn.Module):
    def forward(self, x):
        return x


class Square(nn.Module):
    """Non-linear, so averaging outputs differs from feeding an average."""

    def forward(self, x):
        return x * x


def splits(k=4, z=5, n=12, seed=0):
    return np.random.default_rng(seed).normal(1.0, 0.3, size=(k, z, n, n)).astype(np.float32)


NORM = {"mean": 0.7, "std": 2.0}


@pytest.mark.parametrize("strategy", ["X:1", "1:X"])
def test_identity_model_gives_the_mean_of_the_splits(strategy):
    # mean_j (sum - s_j) / (K - 1) = mean_j s_j: both strategies average to the split mean
    s = splits()
    out = denoise(Identity(), s, strategy=strategy, normalisation=NORM)
    assert out.shape == s.shape[1:] and out.dtype == np.float32
    np.testing.assert_allclose(out, s.mean(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["X:1", "1:X"])
def test_outputs_of_the_k_inputs_are_averaged(strategy):
    s = splits(k=3)
    out = denoise(Square(), s, strategy=strategy, normalisation=NORM, batch_size=2)
    k = s.shape[0]
    expected = np.zeros_like(s[0])
    for j in range(k):
        inp = np.delete(s, j, axis=0).mean(0) if strategy == "X:1" else s[j]
        z = (inp - NORM["mean"]) / NORM["std"]
        expected += (z * z) * NORM["std"] + NORM["mean"]
    expected /= k
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # not the same as denoising the full-data reconstruction
    full = (s.mean(0) - NORM["mean"]) / NORM["std"]
    assert not np.allclose(out, full * full * NORM["std"] + NORM["mean"], atol=1e-3)


def test_batch_size_does_not_change_the_result():
    torch.manual_seed(0)
    model = build_model("dncnn", depth=3, features=4, batchnorm=False)
    s = splits(z=3)
    a = denoise(model, s, strategy="X:1", normalisation=NORM, batch_size=1)
    b = denoise(model, s, strategy="X:1", normalisation=NORM, batch_size=7)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 12, 12), (1, 5, 12, 12), (12, 12)])
def test_the_full_reconstruction_cannot_be_denoised(shape):
    with pytest.raises(ValueError, match="split"):
        denoise(Identity(), np.zeros(shape, np.float32), strategy="X:1", normalisation=None)


def test_bad_strategy():
    with pytest.raises(ValueError, match="strategy"):
        denoise(Identity(), splits(), strategy="2:2", normalisation=None)


def test_denoise_checkpoint_uses_the_stored_strategy_and_normalisation(tmp_path):
    s = splits(z=4, n=16)
    res = train_n2i(
        s, TrainConfig(epochs=1, progress=False, strategy="1:X", val_fraction=0.25, neighbours=0, patch_size=None),
        ModelConfig(name="msd", params={"depth": 3}), tmp_path,
    )
    a = denoise_checkpoint(res.checkpoint, s, device="cpu")
    b = denoise(res.model, s, strategy="1:X", normalisation=res.normalisation)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
