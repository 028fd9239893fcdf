"""GainTuning (Mohan et al. 2021, "Adaptive denoising via GainTuning"): adapt a pretrained
network to the target scan through one multiplicative gain per output channel of each convolution.

Every convolution ``y = W * x + b`` of the pretrained network becomes ``y = g * (W * x + b)``
with a learnable gain ``g`` per output channel, initialised at 1 (so the tuned network starts
as the pretrained one). ``W`` and ``b`` (and batch-norm statistics) stay frozen; only the
gains are trained, with the Noise2Inverse loss on the target scan itself: its projections in
``k`` interlaced splits, input the mean of the FBPs of ``k - 1`` splits (strategy ``X:1``),
target the held-out split's FBP. Inference is as in Noise2Inverse
(:func:`tomodenoise.denoise.denoise`): the tuned network on the ``k`` ``X:1`` inputs, averaged
(never the full FBP, whose noise level the gains were not tuned for); the untuned network's
output on the same inputs is the snapshot ``"pretrained"``. With ``ctx.tune_slice`` set, that
slice is left out of the tuning and the N2I validation loss before/after is measured on it.

The pretrained network is a :class:`~tomodenoise.methods.sbd.SimulationBased` file or a
Noise2Inverse checkpoint (``pretrained``); without one, the simulation-based pretraining runs
first, at the noise level of the ``X:1`` inputs (``I0 (k - 1) / k``). Convolutions are found
as ``nn.Conv2d`` / ``nn.ConvTranspose2d`` modules and, for networks that keep their kernels
as bare parameters (MSD), as 4-D parameters ``...weight...`` with a 1-D ``...bias...`` partner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

from ..denoise import denoise
from ..train import N2IPairs, load_checkpoint, n2i_validation_loss
from .base import Context, MethodResult, Scan
from .noise_level import estimate_noise
from .sbd import SBD_FORMAT, SimulationBased, load_pretrained
from .training import LearnedConfig, fit, random_patches

__all__ = ["GainTuned", "GainTuning", "conv_targets", "load_any_pretrained"]


def conv_targets(model: nn.Module) -> list[tuple[str, str | None, int]]:
    """``(weight name, bias name or None, output-channel axis of the weight)`` of every convolution."""
    out: list[tuple[str, str | None, int]] = []
    seen: set[str] = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            if isinstance(mod, nn.ConvTranspose2d) and mod.groups != 1:
                raise ValueError(f"GainTuning: grouped transposed convolution {mname!r} is not supported")
            pre = f"{mname}." if mname else ""
            out.append((pre + "weight", None if mod.bias is None else pre + "bias",
                        1 if isinstance(mod, nn.ConvTranspose2d) else 0))
            seen.update(pre + n for n, _ in mod.named_parameters())
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name in seen or p.ndim != 4:
            continue
        if "weight" not in name:
            raise ValueError(f"GainTuning: 4-D parameter {name!r} is not recognised as a convolution kernel")
        bias = name.replace("weights", "biases") if "weights" in name else name.replace("weight", "bias")
        out.append((name, bias if bias in params and params[bias].shape == (p.shape[0],) else None, 0))
    if not out:
        raise ValueError("GainTuning: the network has no convolutions")
    return out


class GainTuned(nn.Module):
    """``base`` with a learnable gain on every output channel of every convolution.

    The base network's parameters are frozen (``requires_grad=False``) and it stays in eval
    mode (batch-norm statistics fixed) even when this module trains; ``gains`` holds one
    1-D parameter per convolution, in the order of :func:`conv_targets`.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.targets = conv_targets(base)
        params = dict(base.named_parameters())
        self.gains = nn.ParameterList(
            nn.Parameter(torch.ones(params[w].shape[axis], device=params[w].device)) for w, _, axis in self.targets)

    def train(self, mode: bool = True) -> GainTuned:
        self.training = mode
        self.base.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = dict(self.base.named_parameters())
        scaled: dict[str, torch.Tensor] = {}
        for (w, b, axis), g in zip(self.targets, self.gains):
            shape = [1] * params[w].ndim
            shape[axis] = -1
            scaled[w] = params[w] * g.view(shape)
            if b is not None:
                scaled[b] = params[b] * g
        return functional_call(self.base, scaled, (x,))


def load_any_pretrained(path: str | Path, device: str) -> tuple[nn.Module, dict[str, float], str]:
    """Network, normalisation and kind (``"sbd"`` or ``"n2i"``) of a pretraining file or N2I checkpoint."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=True) if Path(path).is_file() else None
    if isinstance(raw, dict) and raw.get("format") == SBD_FORMAT:
        model, meta = load_pretrained(path, device)
        return model, meta["normalisation"], "sbd"
    model, meta = load_checkpoint(path, device=device)  # FileNotFoundError / ValueError when neither
    if int(meta.get("train_config", {}).get("neighbours", 0)):
        raise ValueError(f"GainTuning: {path} was trained with neighbour channels, which GainTuning does not feed")
    return model, meta["normalisation"], "n2i"


class GainTuning(LearnedConfig):
    """Tune per-channel gains of a pretrained network with the N2I loss on the target scan."""

    method: Literal["gaintuning"] = "gaintuning"
    needs: ClassVar[tuple[str, ...]] = ()

    k: int = Field(4, ge=2, description="Interlaced angle splits of the N2I loss (strategy X:1)")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate of the gains (larger than for weights)")
    pretrained: str | None = Field(None, description="SBD pretraining file or N2I checkpoint; none: pretrain with SBD")
    sbd: SimulationBased = Field(default_factory=SimulationBased,
                                 description="The simulation-based pretraining used when 'pretrained' is empty")

    def _pretrained(self, scan: Scan, ctx: Context) -> tuple[nn.Module, dict[str, float], dict[str, Any]]:
        if self.pretrained is not None:
            model, norm, kind = load_any_pretrained(self.pretrained, ctx.device)
            return model, norm, {"kind": kind, "path": str(self.pretrained), "pretrain_seconds": 0.0}
        i0 = self.sbd.i0 if self.sbd.i0 is not None else estimate_noise(scan, absorption=self.sbd.absorption).i0
        sbd = self.sbd.model_copy(update={"model": self.model, "i0": i0 * (self.k - 1) / self.k})
        model, meta = sbd.pretrain(scan, ctx)
        return model, meta["normalisation"], {"kind": "sbd", "path": meta["path"],
                                              "pretrain_seconds": meta["pretrain_seconds"], "i0": meta["i0"]}

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        base, norm, pre = self._pretrained(scan, ctx)
        tuned = GainTuned(base)
        splits = scan.split_fbps(self.k)
        n_z = splits.shape[1]
        held = [ctx.tune_slice] if 0 <= ctx.tune_slice < n_z and n_z > 1 else []
        train_z = [z for z in range(n_z) if z not in held]
        pairs = N2IPairs(splits, "X:1", slices=train_z)
        val_pairs = N2IPairs(splits, "X:1", slices=held or train_z)
        m, s = norm["mean"], norm["std"]
        items = [pairs.pair(z, j) for z in train_z for j in range(self.k)]
        inp = (np.stack([x for x, _ in items]) - m) / s
        tgt = (np.stack([t for _, t in items]) - m) / s

        def batches(rng: np.random.Generator):
            x, t = random_patches(rng, [inp, tgt], self.batch_size, self.patch_size)
            return torch.from_numpy(x), torch.from_numpy(t), None

        val_before = n2i_validation_loss(tuned, val_pairs, norm, device=ctx.device)
        untuned = denoise(tuned, splits, strategy="X:1", normalisation=norm, batch_size=self.batch_size,
                          device=ctx.device)
        stats = fit(tuned, batches, ctx, steps=self.steps or ctx.steps, lr=self.lr, params=tuned.gains.parameters())
        val_after = n2i_validation_loss(tuned, val_pairs, norm, device=ctx.device)
        volume = denoise(tuned, splits, strategy="X:1", normalisation=norm, batch_size=self.batch_size,
                         device=ctx.device)
        gains = torch.cat([g.detach().cpu().flatten() for g in tuned.gains])
        torch.save({"gains": [g.detach().cpu() for g in tuned.gains], "targets": tuned.targets,
                    "pretrained": pre["path"]}, Path(ctx.work_dir) / "gaintuning_gains.pt")
        ctx.log(f"{self.label}: {gains.numel()} gains tuned in {stats['seconds']:.1f} s; "
                f"N2I validation loss {val_before:.4g} -> {val_after:.4g}")
        return MethodResult(
            volume=volume,
            params={"k": self.k, "lr": self.lr, "pretrained": pre["path"], "pretrained_kind": pre["kind"],
                    "n_gains": int(gains.numel()), "pretrain_seconds": float(pre["pretrain_seconds"])},
            train_seconds=float(stats["seconds"]),
            snapshots={"pretrained": untuned},
            info={"pretrain_seconds": pre["pretrain_seconds"], "tune_seconds": float(stats["seconds"]),
                  "total_seconds": float(pre["pretrain_seconds"] + stats["seconds"]), "steps": stats["steps"],
                  "val_loss_before": val_before, "val_loss_after": val_after,
                  "val_slices": held or train_z, "inference": "X:1 inputs averaged over the k splits",
                  "gain_range": [float(gains.min()), float(gains.max())], "pretrain_i0": pre.get("i0")},
        )

