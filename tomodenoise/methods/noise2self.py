"""Noise2Self (Batson & Royer, ICML 2019) on the reconstruction, and on the sinogram.

Noise2Self trains a network to predict every pixel from the others: a grid mask picks the
pixels ``(y, x)`` with ``(y + i) % g == 0`` and ``(x + j) % g == 0`` for one of the ``g * g``
phases ``(i, j)`` per batch; those input pixels are replaced by the mean of their four
neighbours (none of which is masked), and the loss counts only the masked pixels. A network
trained so is J-invariant on the masked set, so with noise independent from pixel to pixel
the loss equals the clean-target loss plus a constant.

- :class:`Noise2Self` ("reconstruct, split, denoise") applies this to the full FBP, where the
  noise is *not* pixel-independent (FBP spreads each detector pixel's noise along lines and
  the ramp filter correlates neighbours): the network learns to predict part of the noise
  from the neighbours, which is the failure the comparison shows.
- :class:`SplitDenoiseReconstruct` ("split, denoise, reconstruct") applies it to each
  sinogram ``(angle, det)``, where Poisson noise after ``-log`` is pixel-independent, and
  reconstructs the denoised sinogram with FBP.

At inference the network sees the unmasked image (``inference="plain"``, the paper's usual
choice) or, with ``inference="invariant"``, every pixel is taken from the phase that masks it
(the strictly J-invariant output: ``g * g`` forward passes).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from ..recon import fbp
from .base import Context, MethodResult, Scan, Timer
from .training import LearnedConfig, apply, fit, make_model, normalisation_of, random_patches

__all__ = ["Noise2Self", "SplitDenoiseReconstruct", "grid_mask", "masked_input", "train_noise2self"]


def grid_mask(shape: tuple[int, int], grid: int, phase: int) -> np.ndarray:
    """Boolean ``(y, x)`` mask of the pixels ``(y + i) % grid == 0 and (x + j) % grid == 0``,
    ``(i, j) = divmod(phase, grid)``."""
    if grid < 2:
        raise ValueError(f"grid must be >= 2 (a masked pixel's neighbours must be unmasked), got {grid}")
    i, j = divmod(int(phase) % (grid * grid), grid)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy + i) % grid == 0) & ((xx + j) % grid == 0)


def masked_input(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``images`` (``(..., y, x)``) with the ``mask`` pixels replaced by the mean of their 4 neighbours.

    Borders are mirrored without repeating the edge (``numpy.pad`` mode ``reflect``), so a
    border pixel's missing neighbour is the opposite neighbour, never the pixel itself.
    """
    x = np.asarray(images, dtype=np.float32)
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(x, pad, mode="reflect")
    mean4 = 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
    return np.where(mask, mean4, x).astype(np.float32)


def train_noise2self(cfg: LearnedConfig, images: np.ndarray, ctx: Context, grid: int):
    """Train ``cfg.model`` with grid-masked Noise2Self on the ``(z, y, x)`` images.

    Returns ``(model, normalisation, fit_info)``.
    """
    norm = normalisation_of(images)
    data = (np.asarray(images, dtype=np.float32) - norm["mean"]) / norm["std"]
    model = make_model(cfg.model, ctx.seed, ctx.device)

    def batches(rng: np.random.Generator):
        (x,) = random_patches(rng, [data], cfg.batch_size, cfg.patch_size)
        mask = grid_mask(x.shape[-2:], grid, int(rng.integers(grid * grid)))
        w = np.broadcast_to(mask, x.shape).astype(np.float32)
        return torch.from_numpy(masked_input(x, mask)), torch.from_numpy(x), torch.from_numpy(w)

    info = fit(model, batches, ctx, steps=int(cfg.steps or ctx.steps), lr=cfg.lr)
    return model, norm, info


def invariant_apply(model, images: np.ndarray, norm: dict[str, float], grid: int, batch_size: int) -> np.ndarray:
    """J-invariant output: each pixel from the forward pass of the phase that masks it."""
    out = np.zeros_like(np.asarray(images, dtype=np.float32))
    for phase in range(grid * grid):
        mask = grid_mask(images.shape[-2:], grid, phase)
        y = apply(model, masked_input(images, mask), norm, batch_size=batch_size)
        out[:, mask] = y[:, mask]
    return out


class GridMaskedConfig(LearnedConfig):
    """Parameters of the grid-masked Noise2Self methods."""

    grid: int = Field(4, ge=2, le=16, description="Mask spacing g: one of g*g pixel phases is masked per batch")
    inference: Literal["plain", "invariant"] = Field(
        "plain", description="plain: the network on the unmasked image; invariant: every pixel from the "
                             "pass that masks it (g*g passes)")

    def denoise_images(self, images: np.ndarray, ctx: Context) -> tuple[np.ndarray, dict, float]:
        """Train on ``images`` ``(z, y, x)`` and denoise them: ``(denoised, fit_info, train_seconds)``."""
        with Timer() as t:
            model, norm, info = train_noise2self(self, images, ctx, self.grid)
        if self.inference == "invariant":
            out = invariant_apply(model, images, norm, self.grid, self.batch_size)
        else:
            out = apply(model, images, norm, batch_size=self.batch_size)
        return out, info, t.seconds


class Noise2Self(GridMaskedConfig):
    """Noise2Self on the full FBP ("reconstruct, split, denoise"): pixel masks on correlated noise."""

    method: Literal["noise2self"] = "noise2self"

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        volume, info, seconds = self.denoise_images(scan.fbp(), ctx)
        ctx.log(f"noise2self: {info['steps']} steps, {seconds:.1f} s")
        return MethodResult(volume=volume.astype(np.float32), train_seconds=seconds,
                            params={"grid": self.grid, "inference": self.inference, "steps": info["steps"]},
                            info={"loss": info["loss"]})


class SplitDenoiseReconstruct(GridMaskedConfig):
    """Noise2Self on each sinogram ``(angle, det)``, then FBP ("split, denoise, reconstruct")."""

    method: Literal["sdr"] = "sdr"

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        sino, info, seconds = self.denoise_images(scan.sino, ctx)
        volume = fbp(sino, scan.angles, center=scan.center)
        ctx.log(f"sdr: {info['steps']} steps on the sinograms, {seconds:.1f} s")
        return MethodResult(volume=np.asarray(volume, dtype=np.float32), train_seconds=seconds,
                            params={"grid": self.grid, "inference": self.inference, "steps": info["steps"]},
                            info={"loss": info["loss"]})
