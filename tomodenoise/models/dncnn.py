"""DnCNN (Zhang, Zuo, Chen, Meng & Zhang, IEEE TIP 2017).

``depth`` 3x3 convolutions with ``features`` feature maps: conv+ReLU, ``depth - 2`` times
conv(+BN)+ReLU, and a final conv. With residual learning the network predicts the noise
and returns ``x - net(x)``; with more input than output channels (neighbour slices) the
residual is taken from the centre input channels.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    """DnCNN mapping ``(batch, in_channels, y, x)`` to ``(batch, out_channels, y, x)``.

    Parameters
    ----------
    depth : int
        Number of convolution layers (default 17; at least 2).
    features : int
        Feature maps of the hidden layers (default 64).
    batchnorm : bool
        Batch normalisation in the hidden layers (default True).
    residual : bool
        Residual learning: the network estimates the noise, the output is ``x - noise``
        (default True).
    in_channels : int
        Input channels (default 1; more with neighbour slices).
    out_channels : int
        Output channels (default 1); at most ``in_channels``, of the same parity with residual
        learning (the residual is the centre ``out_channels`` input channels).
    """

    def __init__(
        self,
        depth: int = 17,
        features: int = 64,
        batchnorm: bool = True,
        residual: bool = True,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if int(depth) < 2:
            raise ValueError(f"DnCNN: depth must be >= 2, got {depth}")
        if int(features) < 1:
            raise ValueError(f"DnCNN: features must be >= 1, got {features}")
        self.depth, self.features = int(depth), int(features)
        self.residual = bool(residual)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        if not 1 <= self.out_channels <= self.in_channels:
            raise ValueError(f"DnCNN: out_channels must be in 1..in_channels ({self.in_channels}), got {out_channels}")
        if self.residual and (self.in_channels - self.out_channels) % 2:
            raise ValueError("DnCNN: with residual learning in_channels - out_channels must be even (a centre), "
                             f"got {self.in_channels} and {self.out_channels}")
        self._centre = (self.in_channels - self.out_channels) // 2
        layers: list[nn.Module] = [nn.Conv2d(self.in_channels, self.features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(self.depth - 2):
            layers.append(nn.Conv2d(self.features, self.features, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(self.features))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(self.features, self.out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DnCNN expects (batch, {self.in_channels}, y, x), got {tuple(x.shape)}")
        r = self.body(x)
        if not self.residual:
            return r
        return x[:, self._centre : self._centre + self.out_channels] - r

    def extra_repr(self) -> str:
        return f"depth={self.depth}, features={self.features}, residual={self.residual}"
