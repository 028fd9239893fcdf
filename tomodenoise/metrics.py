"""Image quality metrics, with and without ground truth.

With a clean reference (simulations): :func:`psnr`, :func:`ssim`, :func:`mse` (scikit-image).

Without one: the unsupervised MSE/PSNR of Rangarajan, Mohan et al. ("Evaluating unsupervised
denoising requires unsupervised metrics", ICML 2023; by the authors of "Adaptive denoising
via GainTuning"), :func:`umse` / :func:`upsnr`, which need three extra noisy copies of the
image whose noise is independent of each other and of the denoiser's input; the method
comparison (:mod:`tomodenoise.methods.compare`) takes them from the FBPs of interlaced angle
groups the method does not see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["mse", "psnr", "ssim", "umse", "upsnr"]


def _pair(ref: Any, img: Any) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    img = np.asarray(img, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, image {img.shape}")
    if ref.ndim not in (2, 3):
        raise ValueError(f"expected a slice (y, x) or a volume (z, y, x), got shape {ref.shape}")
    return ref, img


def _range(ref: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        data_range = float(ref.max() - ref.min())
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0 (a constant reference needs an explicit data_range), got {data_range}")
    return float(data_range)


def mse(ref: Any, img: Any) -> float:
    """Mean squared error between ``ref`` and ``img`` over all voxels."""
    ref, img = _pair(ref, img)
    return float(np.mean((ref - img) ** 2))


def psnr(ref: Any, img: Any, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB (``skimage.metrics.peak_signal_noise_ratio``).

    Parameters
    ----------
    ref, img : array_like, shape (y, x) or (z, y, x)
        Clean reference and the image to evaluate.
    data_range : float, optional
        Default ``ref.max() - ref.min()`` over the whole evaluated volume. Pass the same
        value when comparing several images against one reference.

    Returns
    -------
    float
        PSNR over the whole volume (one MSE over all voxels); ``inf`` for identical images.
    """
    ref, img = _pair(ref, img)
    return float(peak_signal_noise_ratio(ref, img, data_range=_range(ref, data_range)))


def ssim(ref: Any, img: Any, data_range: float | None = None) -> float:
    """Structural similarity (``skimage.metrics.structural_similarity``, 7x7 window).

    For a volume ``(z, y, x)`` SSIM is computed per slice, with one ``data_range`` for all
    slices (default ``ref.max() - ref.min()`` over the volume), and averaged. Slices smaller
    than 7 pixels use the largest odd window that fits (at least 3).
    """
    ref, img = _pair(ref, img)
    dr = _range(ref, data_range)
    win = min(7, min(ref.shape[-2:]) - (1 - min(ref.shape[-2:]) % 2))
    if win < 3:
        raise ValueError(f"slices of shape {ref.shape[-2:]} are too small for SSIM (need >= 3x3)")
    if ref.ndim == 2:
        return float(structural_similarity(ref, img, data_range=dr, win_size=win))
    return float(np.mean([structural_similarity(r, i, data_range=dr, win_size=win) for r, i in zip(ref, img)]))


def umse(f_y: Any, a: Any, b: Any, c: Any) -> float:
    """Unsupervised mean squared error: ``mean[(a - f(y))**2 - (b - c)**2 / 2]``.

    Parameters
    ----------
    f_y : array_like
        The denoised image ``f(y)`` computed from a noisy copy ``y``.
    a, b, c : array_like
        Three more noisy copies of the same clean image ``x``.

    Returns
    -------
    float
        An estimate of ``mean[(f(y) - x)**2]``, the MSE to the clean image.

    Notes
    -----
    ``E[(a - f)^2] = E[(x - f)^2] + var(n_a)`` when the noise ``n_a`` of ``a`` is zero-mean and
    independent of ``f(y)``, and ``E[(b - c)^2] / 2 = var(n)`` when ``b`` and ``c`` have
    independent noise of the same variance as ``a``. Hence uMSE is an unbiased estimate of the
    MSE to the clean image only if

    - the noise of ``y``, ``a``, ``b`` and ``c`` is zero-mean and mutually independent,
      and ``f(y)`` depends on none of ``a``, ``b``, ``c`` (not trained on them either);
    - ``a``, ``b`` and ``c`` have the same noise variance (pixelwise) and the same clean
      signal. For split FBPs the "clean" signal of a split includes its own angular
      undersampling streaks, which differ between splits: ``b - c`` then also contains
      streak differences and uMSE is biased low.

    It is an estimate: it can be negative on small images or for very good denoisers, and
    its noise is of the order of the noise variance divided by ``sqrt(n_pixels)``. Use it to
    rank denoisers evaluated on the same copies, not as an absolute figure. Reference:
    Rangarajan, Mohan et al., "Evaluating unsupervised denoising requires unsupervised
    metrics", ICML 2023.
    """
    f_y, a, b, c = (np.asarray(v, dtype=np.float64) for v in (f_y, a, b, c))
    if not (f_y.shape == a.shape == b.shape == c.shape):
        raise ValueError(f"shapes differ: f(y) {f_y.shape}, a {a.shape}, b {b.shape}, c {c.shape}")
    return float(np.mean((a - f_y) ** 2 - 0.5 * (b - c) ** 2))


def upsnr(f_y: Any, a: Any, b: Any, c: Any, data_range: float) -> float:
    """Unsupervised PSNR in dB: ``10 log10(data_range**2 / umse(f_y, a, b, c))``.

    ``data_range`` must be given (there is no clean reference to take it from); use the same
    value for every method being compared. Returns ``nan`` when the uMSE estimate is not
    positive (see :func:`umse` for when that happens and the other caveats).
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    u = umse(f_y, a, b, c)
    if u <= 0:
        return float("nan")
    return float(10.0 * np.log10(data_range**2 / u))

