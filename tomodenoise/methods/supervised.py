"""Supervised training on (noisy FBP, clean reference) pairs, and Noise2Noise from a repeat scan.

Both train the configured network with :func:`~tomodenoise.methods.training.fit` on random
patches of image pairs and differ only in the target:

* :class:`Supervised` (``method: supervised``) maps the FBP of the noisy scan to the clean
  reference ``scan.clean`` (a simulation's noise-free FBP or a high-dose scan). It is
  cross-fitted (:func:`cross_fit_folds`): one network per fold of slices, each trained on the
  other fold, so every slice is denoised by a network that never saw its clean reference
  (a one-slice scan is trained and applied in-sample, and says so).
* :class:`Noise2Noise` (``method: noise2noise``, Lehtinen et al. 2018, "Noise2Noise: learning
  image restoration without clean data") maps the FBP of the scan to the FBP of an independent
  repeat scan of the same object and, symmetrically, the repeat's FBP to the scan's. With
  independent zero-mean noise the expected target is the clean image, so the MSE minimiser is
  the same as with clean targets.

:func:`pair_batches` and :func:`cross_fit_folds` are shared with :mod:`.tomogan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from .base import Context, MethodResult, Scan, Timer
from .training import Batch, LearnedConfig, apply, fit, make_model, normalisation_of, random_patches

__all__ = ["Noise2Noise", "Supervised", "cross_fit_folds", "pair_batches", "repeat_pairs"]


def cross_fit_folds(n_slices: int) -> list[tuple[list[int], list[int]]]:
    """``(train, apply)`` z indices of two folds (odd and even slices), so that no slice is
    denoised by a network trained on its own clean reference; one slice: trained and applied
    on it (in-sample, the only choice)."""
    if n_slices < 2:
        return [([0], [0])]
    even, odd = list(range(0, n_slices, 2)), list(range(1, n_slices, 2))
    return [(odd, even), (even, odd)]


def _dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips of the square (``k`` in 0..7) of ``(..., y, x)``."""
    a = np.rot90(a, k % 4, axes=(-2, -1))
    return a[..., ::-1] if k >= 4 else a


def pair_batches(inputs: np.ndarray, targets: np.ndarray, normalisation: dict[str, float], *,
                 batch_size: int, patch_size: int | None, augment: bool = True
                 ) -> Callable[[np.random.Generator], Batch]:
    """A ``batches(rng)`` for :func:`~tomodenoise.methods.training.fit` of (input, target) pairs.

    Parameters
    ----------
    inputs, targets : numpy.ndarray
        ``(z, y, x)`` volumes of the same shape; slice ``k`` of ``inputs`` is trained to give
        slice ``k`` of ``targets``.
    normalisation : dict
        ``{"mean", "std"}`` applied to both (the one :func:`~.training.apply` undoes).
    batch_size, patch_size : int
        Patches per batch and their side (whole slices when None).
    augment : bool
        One random rotation/flip of the square per pair (the same for input and target).

    Returns
    -------
    callable
        ``batches(rng) -> (input, target, None)``, ``(batch, 1, p, p)`` float32 tensors.
    """
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs {inputs.shape} and targets {targets.shape} differ in shape")
    m, s = normalisation["mean"], normalisation["std"]
    x_all = ((np.asarray(inputs, dtype=np.float32) - m) / s).astype(np.float32)
    t_all = ((np.asarray(targets, dtype=np.float32) - m) / s).astype(np.float32)

    def batches(rng: np.random.Generator) -> Batch:
        x, t = random_patches(rng, [x_all, t_all], batch_size, patch_size)
        if augment:
            ks = rng.integers(8, size=len(x))
            x = np.stack([_dihedral(a, int(k)) for a, k in zip(x, ks)])
            t = np.stack([_dihedral(a, int(k)) for a, k in zip(t, ks)])
        return (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(t)), None)

    return batches


def repeat_pairs(scan: Scan, method: str) -> tuple[np.ndarray, np.ndarray]:
    """FBPs of ``scan`` and of its repeat ``scan.second`` (ValueError without a matching repeat)."""
    if scan.second is None:
        raise ValueError(f"{method} needs an independent repeat scan of the same object (scan.second is None)")
    if scan.second.shape != scan.shape:
        raise ValueError(f"{method}: the repeat scan's grid {scan.second.shape} differs from the scan's {scan.shape}")
    return scan.fbp(), scan.second.fbp()


def _train_and_apply(cfg: LearnedConfig, inputs: np.ndarray, targets: np.ndarray,
                     normalisation: dict[str, float], ctx: Context, augment: bool
                     ) -> tuple[torch.nn.Module, dict[str, Any], float]:
    """Train a fresh ``cfg.model`` on the pairs; the model, fit's stats and the seconds."""
    model = make_model(cfg.model, ctx.seed, ctx.device)
    batches = pair_batches(inputs, targets, normalisation, batch_size=cfg.batch_size,
                           patch_size=cfg.patch_size, augment=augment)
    with Timer() as t:
        stats = fit(model, batches, ctx, steps=cfg.steps or ctx.steps, lr=cfg.lr)
    return model, stats, t.seconds


class Supervised(LearnedConfig):
    """Supervised denoising: the network trained on (noisy FBP, clean reference) patch pairs.

    Needs ``scan.clean``: the noise-free FBP of a simulation or a high-dose scan of the same
    object. It is the upper bound the self-supervised methods are measured against.
    """

    method: Literal["supervised"] = "supervised"
    needs: ClassVar[tuple[str, ...]] = ("clean",)

    augment: bool = Field(True, description="Random rotations/flips of the training pairs")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """Train one network per fold on the other fold's slices, denoise each fold's FBP."""
        if scan.clean is None:
            raise ValueError("supervised needs a clean reference: a simulation or a high-dose scan "
                             "(scan.clean is None)")
        noisy = scan.fbp()
        volume = np.empty(noisy.shape, np.float32)
        seconds, steps, losses = 0.0, 0, []
        folds = cross_fit_folds(scan.shape[0])
        for train_zs, apply_zs in folds:
            norm = normalisation_of(noisy[train_zs])
            model, stats, secs = _train_and_apply(self, noisy[train_zs], scan.clean[train_zs], norm, ctx, self.augment)
            volume[apply_zs] = apply(model, noisy[apply_zs], norm, batch_size=self.batch_size)
            seconds, steps = seconds + secs, stats["steps"]
            losses.append(stats["loss"])
        ctx.log(f"{self.label}: {steps} steps x {len(folds)} folds, loss {np.mean(losses):.4g}")
        return MethodResult(
            volume=volume,
            params={"folds": len(folds), "steps_per_fold": steps,
                    "note": "cross-fitted: no slice denoised by a network trained on it" if len(folds) > 1
                    else "one slice: trained and applied on it (in-sample)"},
            train_seconds=seconds, info={"steps": steps, "loss": losses, "folds": folds})


class Noise2Noise(LearnedConfig):
    """Noise2Noise (Lehtinen et al. 2018) from two independent scans of the same object.

    Trains on (FBP of scan 1 -> FBP of scan 2) and (FBP of scan 2 -> FBP of scan 1) on every
    slice (no clean reference is used, so nothing needs holding out). ``apply_to`` chooses the
    input of the trained network:

    * ``first`` (default): scan 1's FBP. The same measured data every other method gets, and
      the noise level the network was trained on, so the comparison measures what the second
      scan teaches, not its extra dose.
    * ``both``: the mean of the network on scan 1's and on scan 2's FBP (in-distribution
      inputs, and twice the dose: the best N2N can do with both scans).
    * ``average``: the network on the mean of the two FBPs (twice the dose, but half the noise
      variance the network was trained on: a distribution shift, for comparison only).
    """

    method: Literal["noise2noise"] = "noise2noise"
    needs: ClassVar[tuple[str, ...]] = ("second",)

    augment: bool = Field(True, description="Random rotations/flips of the training pairs")
    apply_to: Literal["first", "both", "average"] = Field(
        "first", description="Input at inference: scan 1's FBP (same data as the other methods), the mean of the "
                             "outputs on both scans, or the output on the mean of both FBPs")

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """Train both directions on every slice, then denoise as ``apply_to`` says."""
        f1, f2 = repeat_pairs(scan, "noise2noise")
        norm = normalisation_of(np.concatenate([f1, f2]))
        model, stats, seconds = _train_and_apply(self, np.concatenate([f1, f2]), np.concatenate([f2, f1]),
                                                 norm, ctx, self.augment)
        if self.apply_to == "first":
            vol = apply(model, f1, norm, batch_size=self.batch_size)
        elif self.apply_to == "both":
            vol = 0.5 * (apply(model, f1, norm, batch_size=self.batch_size)
                         + apply(model, f2, norm, batch_size=self.batch_size))
        else:
            vol = apply(model, 0.5 * (f1 + f2), norm, batch_size=self.batch_size)
        ctx.log(f"{self.label}: {stats['steps']} steps, loss {stats['loss']:.4g}, applied to {self.apply_to}")
        return MethodResult(
            volume=vol.astype(np.float32),
            params={"apply_to": self.apply_to, "train_slices": "all",
                    "pairs": "scan1->scan2 and scan2->scan1"},
            train_seconds=seconds, info={"steps": stats["steps"], "loss": stats["loss"], "normalisation": norm})
