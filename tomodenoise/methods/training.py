"""The one small training loop the learned comparison methods share, and image inference.

Noise2Inverse itself trains with :func:`tomodenoise.train.train_n2i`; the other learned
methods (Noise2Self, supervised, Noise2Noise, simulation-based, GainTuning, the TomoGAN
generator) draw batches of (input, target, weight) patches from their own data and train for
``ctx.steps`` Adam steps with :func:`fit`, then denoise a volume slice by slice with
:func:`apply`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..config import ModelConfig
from ..denoise import forward
from ..models import build_model
from .base import Context, MethodConfig

__all__ = ["Batch", "LearnedConfig", "apply", "fit", "make_model", "normalisation_of", "random_patches"]

#: (input, target, weight or None), each ``(batch, channels, y, x)`` float32 tensors
Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


class LearnedConfig(MethodConfig):
    """Parameters every learned method shares (same network and steps for a fair comparison)."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Network (registry name and parameters)")
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)
    patch_size: int | None = Field(64, ge=8, description="Square training patches; whole slices when empty")
    steps: int | None = Field(None, ge=1, description="Adam steps; the comparison's --steps when empty")


def make_model(cfg: ModelConfig, seed: int, device: str) -> nn.Module:
    """The network of ``cfg``, initialised from ``seed``, on ``device``."""
    torch.manual_seed(seed)
    from ..train.recipe import recipe_model

    cfg = recipe_model(cfg)  # the same network as N2I's when no size is given
    return build_model(cfg.name, **cfg.params).to(device)


def normalisation_of(volume: np.ndarray) -> dict[str, float]:
    """``{"mean", "std"}`` of a volume (std at least 1e-8)."""
    v = np.asarray(volume, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(max(v.std(), 1e-8))}


def random_patches(rng: np.random.Generator, arrays: Iterable[np.ndarray], n: int,
                   size: int | None) -> list[np.ndarray]:
    """``n`` random (slice, patch) crops at the same place in each of ``arrays`` ``(z, y, x)``.

    Returns one ``(n, 1, p, p)`` float32 array per input array (whole slices when ``size`` is
    None or not smaller than the slice).
    """
    arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
    z, ny, nx = arrays[0].shape
    out: list[list[np.ndarray]] = [[] for _ in arrays]
    for _ in range(n):
        k = int(rng.integers(z))
        if size is None or size >= min(ny, nx):
            ys, xs = slice(None), slice(None)
        else:
            y0, x0 = int(rng.integers(ny - size + 1)), int(rng.integers(nx - size + 1))
            ys, xs = slice(y0, y0 + size), slice(x0, x0 + size)
        for o, a in zip(out, arrays):
            o.append(a[k, ys, xs])
    return [np.stack(o)[:, None] for o in out]


def fit(
    model: nn.Module,
    batches: Callable[[np.random.Generator], Batch],
    ctx: Context,
    *,
    steps: int,
    lr: float,
    params: Iterable[nn.Parameter] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``steps`` Adam steps on ``batches(rng)``; only ``params`` when given.

    The default loss is the (weighted) mean squared error. ``ctx.minutes`` caps the wall
    time. Returns ``{"steps", "seconds", "loss"}`` (``loss``: the last 20 steps' mean).
    """
    device = next(model.parameters()).device
    trainable = list(model.parameters() if params is None else params)
    opt = torch.optim.Adam(trainable, lr=lr)
    rng = np.random.default_rng(ctx.seed)
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    done = 0
    for step in range(steps):
        x, t, w = batches(rng)
        x, t = x.to(device), t.to(device)
        y = model(x)
        if loss_fn is not None:
            loss = loss_fn(y, t, None if w is None else w.to(device))
        elif w is None:
            loss = torch.mean((y - t) ** 2)
        else:
            w = w.to(device)
            loss = torch.sum(w * (y - t) ** 2) / torch.clamp(w.sum(), min=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        done = step + 1
        if on_step is not None:
            on_step(done, losses[-1])
        if ctx.minutes is not None and time.perf_counter() - t0 > 60 * ctx.minutes:
            break
    model.eval()
    return {"steps": done, "seconds": time.perf_counter() - t0, "loss": float(np.mean(losses[-20:])) if losses else None}


@torch.no_grad()
def apply(model: nn.Module, volume: np.ndarray, normalisation: dict[str, float], *, batch_size: int = 4,
          channels: Callable[[np.ndarray, int], np.ndarray] | None = None) -> np.ndarray:
    """Denoise ``(z, y, x)`` slice by slice: ``denormalise(model(normalise(slice)))``.

    ``channels(volume, k)`` may build a multi-channel input ``(c, y, x)`` for slice ``k``
    (default the slice itself).
    """
    vol = np.asarray(volume, dtype=np.float32)
    m, s = normalisation["mean"], normalisation["std"]
    device = next(model.parameters()).device
    model.eval()
    out = np.empty_like(vol)
    for start in range(0, vol.shape[0], batch_size):
        ks = range(start, min(start + batch_size, vol.shape[0]))
        inp = np.stack([channels(vol, k) if channels else vol[k][None] for k in ks])
        y = forward(model, torch.from_numpy((inp - m) / s).to(device))
        out[start:start + len(ks)] = y[:, 0].cpu().numpy() * s + m
    return out
