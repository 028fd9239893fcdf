"""TomoGAN-style conditional GAN denoising (Liu et al. 2020, "TomoGAN: low-dose synchrotron
x-ray tomography with generative adversarial networks", JOSA A 37(3)).

The generator is the configured network (:attr:`LearnedConfig.model`, the same one every
learned method trains), mapping the noisy FBP to the target (the clean reference, or the FBP
of a repeat scan with ``target: second``). Its loss is

    ``w_adv * adversarial + w_mse * MSE + w_perc * perceptual``

with the non-saturating adversarial loss ``-log D(G(x))`` of a small strided-conv
discriminator (:class:`Discriminator`) and the perceptual loss the squared distance of
features of a frozen, user-supplied feature network (:func:`load_feature_network`: a
TorchScript module, or a VGG16/VGG19 state dict; pretrained weights cannot be downloaded at
run time). The discriminator (``d_steps`` updates, as TomoGAN's two per generator update) and
the generator alternate every step. With ``w_adv = w_perc = 0`` the loop is plain MSE
training and gives the same result as :class:`~tomodenoise.methods.supervised.Supervised`
for the same seed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from .base import Context, MethodResult, Scan, Timer
from .supervised import cross_fit_folds, pair_batches, repeat_pairs
from .training import Batch, LearnedConfig, apply, make_model, normalisation_of

__all__ = ["Discriminator", "TomoGAN", "load_feature_network", "perceptual_loss", "train_gan", "vgg_features"]

#: VGG convolution widths ("M": 2x2 max pool), laid out like torchvision's ``vgg.features``
VGG_LAYOUTS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class Discriminator(nn.Module):
    """A small conv discriminator: strided 3x3 convs with LeakyReLU, one logit per image.

    Parameters
    ----------
    in_channels : int
        Image channels.
    features : int
        Channels of the first layer (doubled by each strided layer).
    layers : int
        Strided (stride 2) layers; the logit is the spatial mean of a final 3x3 conv.
    """

    def __init__(self, in_channels: int = 1, features: int = 16, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, features, 3, padding=1), nn.LeakyReLU(0.2)]
        c = features
        for _ in range(layers):
            mods += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` logits (real > 0)."""
        return self.net(x).mean(dim=(1, 2, 3))


def vgg_features(kind: str, last_layer: int) -> nn.Sequential:
    """VGG ``features`` up to index ``last_layer`` (inclusive), indices as in torchvision.

    ``last_layer`` counts the Sequential's modules (conv, ReLU, pool), e.g. 15 is VGG16's
    relu3_3 and 3 its relu1_2. Weights are random until a state dict is loaded.
    """
    if kind not in VGG_LAYOUTS:
        raise ValueError(f"unknown feature network {kind!r}; valid: torchscript, {', '.join(VGG_LAYOUTS)}")
    mods: list[nn.Module] = []
    c = 3
    for v in VGG_LAYOUTS[kind]:
        if v == "M":
            mods.append(nn.MaxPool2d(2, 2))
        else:
            mods += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            c = int(v)
    if not 0 <= last_layer < len(mods):
        raise ValueError(f"feature_layer must be in 0..{len(mods) - 1} for {kind}, got {last_layer}")
    return nn.Sequential(*mods[:last_layer + 1])


class _GreyToRGB(nn.Module):
    """Repeats one channel three times before an RGB feature network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def load_feature_network(path: str | Path, kind: str = "torchscript", layer: int = 15,
                         device: str = "cpu") -> nn.Module:
    """The frozen feature network of the perceptual loss, from a user-supplied file.

    Parameters
    ----------
    path : str or pathlib.Path
        ``torch.jit.save`` archive (``kind="torchscript"``: a module mapping ``(b, 1, y, x)``
        images to features), or a state dict (``torch.save``) of torchvision's VGG16/VGG19
        (keys ``features.<i>.weight``/``bias``, or without the ``features.`` prefix).
    kind : {"torchscript", "vgg16", "vgg19"}
    layer : int
        For VGG: the last ``features`` module used (:func:`vgg_features`).
    device : str

    Returns
    -------
    torch.nn.Module
        In eval mode, parameters frozen (gradients still flow through it to its input).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"feature_weights file {str(p)!r} does not exist (the perceptual loss needs a "
                                "TorchScript module or a VGG state dict supplied by the user)")
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch >= 2.6 marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                net: nn.Module = torch.jit.load(str(p), map_location=device)
        except RuntimeError as e:
            raise ValueError(f"{p} is not a TorchScript archive (for a VGG state dict set feature_net to vgg16 "
                             f"or vgg19): {e}") from e
    else:
        body = vgg_features(kind, layer)
        state = torch.load(str(p), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{p} does not hold a state dict (got {type(state).__name__})")
        state = {k.removeprefix("features."): v for k, v in state.items()}
        wanted = body.state_dict().keys()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(f"{p} lacks {kind} weights {', '.join(missing[:4])} (needed up to layer {layer})")
        body.load_state_dict({k: state[k] for k in wanted})
        net = _GreyToRGB(body).to(device)
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    return net


def perceptual_loss(features: nn.Module, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of ``features(output)`` and ``features(target)`` (the latter constant)."""
    with torch.no_grad():
        ft = features(target)
    return torch.mean((features(output) - ft) ** 2)


def train_gan(gen: nn.Module, disc: nn.Module | None, features: nn.Module | None,
              batches: Callable[[np.random.Generator], Batch], ctx: Context, *, steps: int, lr: float,
              d_lr: float, d_steps: int, w_adv: float, w_mse: float, w_perc: float) -> dict[str, Any]:
    """Alternate discriminator and generator Adam steps; ``{"steps", "seconds", "loss", ...}``.

    Every step draws one batch (as :func:`~tomodenoise.methods.training.fit` does, from
    ``np.random.default_rng(ctx.seed)``); the discriminator takes ``d_steps`` updates (the
    first on that batch, further ones on fresh batches), then the generator one on that batch.
    ``disc`` is unused (may be None) when ``w_adv == 0``, ``features`` when ``w_perc == 0``.
    """
    device = next(gen.parameters()).device
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr)
    adversarial = w_adv > 0 and disc is not None
    opt_d = torch.optim.Adam(disc.parameters(), lr=d_lr) if adversarial else None
    rng = np.random.default_rng(ctx.seed)
    gen.train()
    hist: dict[str, list[float]] = {"loss": [], "mse": [], "adv": [], "perc": [], "d_loss": []}
    t0, done = time.perf_counter(), 0
    for step in range(steps):
        x, t, _ = batches(rng)
        x, t = x.to(device), t.to(device)
        if adversarial:
            disc.train()
            for k in range(d_steps):
                xd, td = (x, t) if k == 0 else (b.to(device) for b in batches(rng)[:2])
                with torch.no_grad():
                    fake = gen(xd)
                real_logit, fake_logit = disc(td), disc(fake)
                d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                                + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            hist["d_loss"].append(float(d_loss.detach()))
        y = gen(x)
        loss = torch.zeros((), device=device)
        if w_mse > 0:
            mse = torch.mean((y - t) ** 2)
            loss = loss + w_mse * mse
            hist["mse"].append(float(mse.detach()))
        if adversarial:
            logit = disc(y)
            adv = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
            loss = loss + w_adv * adv
            hist["adv"].append(float(adv.detach()))
        if w_perc > 0 and features is not None:
            perc = perceptual_loss(features, y, t)
            loss = loss + w_perc * perc
            hist["perc"].append(float(perc.detach()))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        hist["loss"].append(float(loss.detach()))
        done = step + 1
        if ctx.minutes is not None and time.perf_counter() - t0 > 60 * ctx.minutes:
            break
    gen.eval()
    out: dict[str, Any] = {"steps": done, "seconds": time.perf_counter() - t0,
                           "loss_start": float(np.mean(hist["loss"][:10])) if hist["loss"] else None}
    out.update({k: float(np.mean(v[-20:])) if v else None for k, v in hist.items()})
    return out


class TomoGAN(LearnedConfig):
    """TomoGAN-style conditional GAN: the configured network trained adversarially (+ MSE, +perceptual).

    TomoGAN itself weighted MSE 0.5, perceptual (VGG19) 2 and adversarial 20 on images in
    [0, 1]; on the standardised patches used here the MSE is far larger, so the defaults keep
    the adversarial term small against the MSE (as SRGAN's 1e-3). The perceptual term is off
    by default because its feature network must be supplied as a file.
    """

    method: Literal["tomogan"] = "tomogan"
    needs: ClassVar[tuple[str, ...]] = ("clean",)

    target: Literal["clean", "second"] = Field(
        "clean", description="Target of the generator: the clean reference (supervised, as TomoGAN) or the FBP of "
                             "the repeat scan (both directions, Noise2Noise-style; needs scan.second)")
    w_adv: float = Field(1e-3, ge=0, description="Weight of the adversarial loss -log D(G(x))")
    w_mse: float = Field(1.0, ge=0, description="Weight of the MSE to the target")
    w_perc: float = Field(0.0, ge=0, description="Weight of the perceptual loss (needs feature_weights)")
    feature_weights: str | None = Field(
        None, description="User-supplied feature network for the perceptual loss: a TorchScript file "
                          "(feature_net: torchscript) or a VGG16/VGG19 state dict")
    feature_net: Literal["torchscript", "vgg16", "vgg19"] = Field(
        "torchscript", description="What feature_weights holds")
    feature_layer: int = Field(15, ge=0, description="VGG: last features module used (15 = VGG16 relu3_3)")
    d_features: int = Field(16, ge=1, description="Discriminator channels of its first layer")
    d_layers: int = Field(3, ge=1, description="Strided conv layers of the discriminator")
    d_steps: int = Field(2, ge=1, description="Discriminator updates per generator update (TomoGAN: 2)")
    d_lr: float = Field(1e-4, gt=0, description="Discriminator Adam learning rate (TomoGAN: 1e-4)")
    augment: bool = Field(True, description="Random rotations/flips of the training pairs")

    def required(self) -> tuple[str, ...]:
        return ("second",) if self.target == "second" else ("clean",)

    @model_validator(mode="after")
    def _perceptual_needs_weights(self) -> TomoGAN:
        if self.w_perc > 0 and not self.feature_weights:
            raise ValueError("tomogan: w_perc > 0 needs feature_weights, a feature network file you supply (a "
                             "TorchScript module or a VGG state dict); pretrained weights are not downloaded. "
                             "Set w_perc: 0 to train without the perceptual loss")
        return self

    def _folds(self, scan: Scan) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]]:
        """Per network: (inputs, targets, the FBP slices it denoises, their z indices)."""
        if self.target == "second":
            f1, f2 = repeat_pairs(scan, "tomogan with target 'second'")
            return [(np.concatenate([f1, f2]), np.concatenate([f2, f1]), f1, list(range(scan.shape[0])))]
        if scan.clean is None:
            raise ValueError("tomogan needs a clean reference: a simulation or a high-dose scan (scan.clean is None);"
                             " or set target: second with a repeat scan")
        noisy = scan.fbp()
        return [(noisy[tr], scan.clean[tr], noisy[ap], ap) for tr, ap in cross_fit_folds(scan.shape[0])]

    def _train(self, inputs: np.ndarray, targets: np.ndarray, features: nn.Module | None,
               ctx: Context) -> tuple[nn.Module, dict[str, float], dict[str, Any]]:
        """The trained generator, its normalisation and the training stats."""
        norm = normalisation_of(inputs)
        gen = make_model(self.model, ctx.seed, ctx.device)
        disc = None
        if self.w_adv > 0:
            torch.manual_seed(ctx.seed + 1)
            disc = Discriminator(1, self.d_features, self.d_layers).to(ctx.device)
        batches = pair_batches(inputs, targets, norm, batch_size=self.batch_size, patch_size=self.patch_size,
                               augment=self.augment)
        stats = train_gan(gen, disc, features, batches, ctx, steps=self.steps or ctx.steps, lr=self.lr,
                          d_lr=self.d_lr, d_steps=self.d_steps, w_adv=self.w_adv, w_mse=self.w_mse,
                          w_perc=self.w_perc)
        return gen, norm, stats

    def run(self, scan: Scan, ctx: Context) -> MethodResult:
        """Train generator and discriminator alternately (one pair per cross-fitting fold with a
        clean target), denoise the scan's FBP with the generator(s)."""
        folds = self._folds(scan)
        features = None
        if self.w_perc > 0:
            features = load_feature_network(self.feature_weights, self.feature_net, self.feature_layer, ctx.device)
        volume = np.empty(scan.shape, np.float32)
        all_stats = []
        with Timer() as t:
            for inputs, targets, fbp_slices, zs in folds:
                gen, norm, stats = self._train(inputs, targets, features, ctx)
                volume[zs] = apply(gen, fbp_slices, norm, batch_size=self.batch_size)
                all_stats.append(stats)
        stats = {k: v for k, v in all_stats[-1].items() if k != "loss"}
        stats["loss"] = float(np.mean([s["loss"] for s in all_stats]))
        ctx.log(f"{self.label}: {stats['steps']} steps x {len(folds)} network(s), generator loss {stats['loss']:.4g}")
        return MethodResult(
            volume=volume,
            params={"w_adv": self.w_adv, "w_mse": self.w_mse, "w_perc": self.w_perc, "target": self.target,
                    "folds": len(folds), "feature_net": self.feature_net if self.w_perc > 0 else None},
            train_seconds=t.seconds, info={**stats, "normalisation": norm, "fold_slices": [f[3] for f in folds]})

