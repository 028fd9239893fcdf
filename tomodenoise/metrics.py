"""Image quality metrics, with and without ground truth.

With a clean reference (simulations): :func:`psnr`, :func:`ssim`, :func:`mse` (scikit-image).

Without one: the unsupervised MSE/PSNR of Rangarajan, Mohan et al. ("Evaluating unsupervised
denoising requires unsupervised metrics", ICML 2023; by the authors of "Adaptive denoising
via GainTuning"), :func:`umse` / :func:`upsnr`, which need three extra noisy copies of the
image whose noise is independent of each other and of the denoiser's input. In
Noise2Inverse the K split reconstructions supply such copies (:func:`umse_from_splits`).
And the N2I loss (:func:`n2i_loss`), the self-supervised training/validation objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["mse", "n2i_loss", "psnr", "ssim", "umse", "umse_from_splits", "upsnr"]


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


def umse_from_splits(
    denoise_fn: Callable[[np.ndarray], np.ndarray],
    recon_splits: Any,
    held_out: Sequence[int] | None = None,
) -> dict[str, Any]:
    """uMSE of a denoiser using the split reconstructions as independent noisy copies.

    Three splits ``a, b, c`` are held out; ``denoise_fn`` gets only the remaining ones, so
    its output is independent of the held-out noise.

    Parameters
    ----------
    denoise_fn : callable
        Maps split reconstructions ``(k', z, y, x)`` (the ``K - 3`` splits not held out) to a
        denoised volume ``(z, y, x)``; e.g. ``lambda s: s.mean(0)`` (their FBP) or a
        network applied to them. It must not have been trained on the held-out splits.
    recon_splits : array_like, shape (split, z, y, x)
        K >= 4 split reconstructions.
    held_out : three ints, optional
        The splits used as ``a, b, c`` (default the last three).

    Returns
    -------
    dict
        ``umse``, ``held_out``, ``input_splits`` and ``noise_var`` (``mean (b - c)^2 / 2``,
        the noise variance of one split).

    Notes
    -----
    ``a, b, c`` are single-split reconstructions, so the clean image they estimate is the
    expected reconstruction of one split, and ``denoise_fn`` works on ``K - 3`` splits: a
    different input noise level than a network trained with all K splits would see. A
    Noise2Inverse network trained on all K splits has seen ``a, b, c`` as targets: evaluate
    it this way only if it was trained on the other splits, or on other slices. See
    :func:`umse` for the assumptions.
    """
    splits = np.asarray(recon_splits, dtype=np.float32)
    if splits.ndim != 4 or splits.shape[0] < 4:
        raise ValueError(f"umse_from_splits needs (split, z, y, x) with K >= 4 splits, got shape {splits.shape}")
    k = splits.shape[0]
    held = list(range(k - 3, k)) if held_out is None else [int(v) % k for v in held_out]
    if len(held) != 3 or len(set(held)) != 3:
        raise ValueError(f"held_out must name three different splits, got {held_out!r}")
    rest = [j for j in range(k) if j not in held]
    f_y = np.asarray(denoise_fn(splits[rest]))
    a, b, c = (splits[j] for j in held)
    return {
        "umse": umse(f_y, a, b, c),
        "held_out": held,
        "input_splits": rest,
        "noise_var": float(np.mean(0.5 * (b.astype(np.float64) - c) ** 2)),
    }


def n2i_loss(model_outputs: Any, targets: Any) -> Any:
    """The Noise2Inverse loss: mean squared error between network outputs and noisy targets.

    Accepts torch tensors (returns a differentiable scalar tensor) or arrays (returns a float).
    Averaged over every element, i.e. over all slices and all K rotations when the outputs
    and targets of all rotations are stacked.

    Notes
    -----
    The targets are noisy, so the minimum is not zero: for independent zero-mean target noise
    the expected loss is ``MSE(output, clean) + var(target noise)``. Differences between
    models on the same data are meaningful; the absolute value is not an image quality.
    """
    try:
        import torch

        if isinstance(model_outputs, torch.Tensor) or isinstance(targets, torch.Tensor):
            out = torch.as_tensor(model_outputs)
            tgt = torch.as_tensor(targets, dtype=out.dtype, device=out.device)
            if out.shape != tgt.shape:
                raise ValueError(f"shapes differ: outputs {tuple(out.shape)}, targets {tuple(tgt.shape)}")
            return torch.nn.functional.mse_loss(out, tgt)
    except ImportError:  # pragma: no cover
        pass
    out = np.asarray(model_outputs, dtype=np.float64)
    tgt = np.asarray(targets, dtype=np.float64)
    if out.shape != tgt.shape:
        raise ValueError(f"shapes differ: outputs {out.shape}, targets {tgt.shape}")
    return float(np.mean((out - tgt) ** 2))
