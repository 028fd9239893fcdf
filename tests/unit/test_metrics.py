"""Metrics: PSNR/SSIM as scikit-image, unsupervised MSE against the true MSE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tomodenoise.metrics import mse, psnr, ssim, umse, upsnr


def images(seed=0, shape=(3, 32, 32)):
    rng = np.random.default_rng(seed)
    ref = gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32)
    img = (ref + rng.normal(0, 0.05, size=shape)).astype(np.float32)
    return ref, img


def test_psnr_matches_skimage_over_the_volume():
    ref, img = images()
    dr = float(ref.max() - ref.min())
    assert psnr(ref, img) == pytest.approx(peak_signal_noise_ratio(ref, img, data_range=dr), rel=1e-6)
    assert psnr(ref[0], img[0], data_range=2.0) == pytest.approx(
        peak_signal_noise_ratio(ref[0], img[0], data_range=2.0), rel=1e-6
    )
    assert psnr(ref, img, data_range=dr) == pytest.approx(10 * np.log10(dr**2 / mse(ref, img)), rel=1e-6)


def test_ssim_per_slice_with_one_data_range():
    ref, img = images()
    dr = float(ref.max() - ref.min())
    expected = np.mean([structural_similarity(r, i, data_range=dr) for r, i in zip(ref, img)])
    assert ssim(ref, img) == pytest.approx(expected, rel=1e-6)
    assert ssim(ref[1], img[1], data_range=dr) == pytest.approx(structural_similarity(ref[1], img[1], data_range=dr))
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert 0 < ssim(ref[:, :5, :6], img[:, :5, :6]) <= 1  # small slices: smaller window


def test_metric_input_errors():
    ref, img = images()
    with pytest.raises(ValueError, match="shape"):
        psnr(ref, img[:2])
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.ones((4, 4)), np.zeros((4, 4)))


def test_umse_estimates_the_true_mse():
    rng = np.random.default_rng(1)
    shape = (4, 64, 64)
    clean = gaussian_filter(rng.normal(size=shape), 3.0) * 5
    sigma = 0.5
    y, a, b, c = (clean + rng.normal(0, sigma, shape) for _ in range(4))
    f_y = gaussian_filter(y, (0, 1.0, 1.0))  # a denoiser using y only
    true = mse(clean, f_y)
    est = umse(f_y, a, b, c)
    # the estimate's standard deviation is about sigma^2 * sqrt(3 / n)
    tol = 5 * sigma**2 * np.sqrt(3 / clean.size)
    assert abs(est - true) < tol, (est, true, tol)
    assert mse(a, f_y) > true + 0.5 * sigma**2  # the naive noisy-reference MSE is far off
    dr = float(clean.max() - clean.min())
    assert upsnr(f_y, a, b, c, dr) == pytest.approx(10 * np.log10(dr**2 / est))


def test_upsnr_is_nan_for_a_non_positive_estimate():
    x = np.zeros((8, 8))
    assert np.isnan(upsnr(x, x, x + 1, x - 1, 1.0))  # umse = -2

