"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), small and size-agnostic.

Each level has two 3x3 convolutions (padding 1, optional batch normalisation) with ReLU;
2x2 max pooling goes down, a 2x2 transposed convolution goes up, skip connections are
concatenated, and a 1x1 convolution gives the output. Unlike the original (valid
convolutions), padded convolutions keep the size; inputs of any size are padded to a
multiple of ``2 ** depth`` (reflect, or replicate where the image is too small to reflect)
and the output is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet"]


def _block(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net mapping ``(batch, in_channels, y, x)`` to ``(batch, out_channels, y, x)``.

    Parameters
    ----------
    depth : int
        Number of 2x down-samplings (default 4). Channels double at every level.
    base_channels : int
        Feature maps at the first level (default 32).
    batchnorm : bool
        Batch normalisation after each 3x3 convolution (default True).
    residual : bool
        Predict a correction added to the input (``out = x + net(x)``; default False).
    in_channels, out_channels : int
        Image channels in and out.
    """

    def __init__(
        self,
        depth: int = 4,
        base_channels: int = 32,
        batchnorm: bool = True,
        residual: bool = False,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if int(depth) < 0:
            raise ValueError(f"UNet: depth must be >= 0, got {depth}")
        if int(base_channels) < 1:
            raise ValueError(f"UNet: base_channels must be >= 1, got {base_channels}")
        if residual and in_channels != out_channels:
            raise ValueError("UNet: residual=True needs in_channels == out_channels")
        self.depth, self.base_channels = int(depth), int(base_channels)
        self.residual = bool(residual)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        chans = [self.base_channels * 2**i for i in range(self.depth + 1)]
        self.down = nn.ModuleList()
        c = self.in_channels
        for ch in chans:
            self.down.append(_block(c, ch, batchnorm))
            c = ch
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(self.depth - 1, -1, -1):
            self.upconv.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.up.append(_block(2 * chans[i], chans[i], batchnorm))
        self.head = nn.Conv2d(chans[0], self.out_channels, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects (batch, {self.in_channels}, y, x), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        z = x
        if ph or pw:
            mode = "reflect" if max(pad[:2]) < w and max(pad[2:]) < h else "replicate"
            z = F.pad(x, pad, mode=mode)
        skips = []
        for i, block in enumerate(self.down):
            z = block(z)
            if i < self.depth:
                skips.append(z)
                z = F.max_pool2d(z, 2)
        for upconv, block in zip(self.upconv, self.up):
            z = upconv(z)
            z = block(torch.cat([skips.pop(), z], dim=1))
        z = self.head(z)
        if ph or pw:
            z = z[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w]
        return x + z if self.residual else z

    def extra_repr(self) -> str:
        return f"depth={self.depth}, base_channels={self.base_channels}, residual={self.residual}"
