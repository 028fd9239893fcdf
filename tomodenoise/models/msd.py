"""Mixed-Scale Dense network (MS-D; Pelt & Sethian, PNAS 2018), in pure PyTorch.

Every layer sees all previous feature maps (the input included), applies 3x3 dilated
convolutions followed by ReLU, and a final 1x1 convolution combines *all* feature maps
(input and every layer's output) into the output.

Memory
------
A naive implementation concatenates all previous feature maps at every layer
(``torch.cat``), which autograd keeps alive for backward: memory grows quadratically with
depth. Here one buffer of shape ``(batch, in_channels + depth * width, y, x)`` is
preallocated; each layer writes its output into its own channel slice and reads the slice
of all previous channels. Autograd does not allow a buffer to be modified after a view of
it was saved for backward, so forward and backward are written out by hand in one
:class:`torch.autograd.Function`. Backward keeps one gradient buffer of the same shape and
walks the layers in reverse, using the ATen convolution-backward kernels (no recomputation
of the forward pass). Memory for a training step is therefore about two buffers plus
per-layer temporaries: linear in depth.

Dilations follow the paper: channel ``k = i * width + j`` (layer ``i``, channel ``j`` within
the layer) uses dilation ``dilations[k % len(dilations)]``, by default the cycle 1..10.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["MSDNet"]

_PADDING_MODES = ("reflect", "zeros")


def _use_reflect(mode: str, d: int, h: int, w: int) -> bool:
    """Reflect padding needs a pad smaller than the image; fall back to zeros otherwise."""
    return mode == "reflect" and d < h and d < w


class _MSDFunction(torch.autograd.Function):
    """Forward and backward of the whole MS-D network on one preallocated buffer.

    ``spec`` is a tuple ``(in_channels, padding_mode, units)`` where ``units`` is a tuple of
    ``(n_inputs, dilation)`` per output channel ``k`` (written to channel
    ``in_channels + k`` of the buffer). ``params`` are ``w_0, b_0, w_1, b_1, ...``.
    """

    @staticmethod
    def forward(ctx, x, spec, final_weight, final_bias, *params):  # type: ignore[override]
        c_in, mode, units = spec
        b, _, h, w = x.shape
        c_total = c_in + len(units)
        buf = x.new_empty((b, c_total, h, w))
        buf[:, :c_in].copy_(x)
        for k, (n_in, d) in enumerate(units):
            weight, bias = params[2 * k], params[2 * k + 1]
            inp = buf[:, :n_in]
            if _use_reflect(mode, d, h, w):
                out = F.conv2d(F.pad(inp, (d, d, d, d), mode="reflect"), weight, bias, dilation=d)
            else:
                out = F.conv2d(inp, weight, bias, padding=d, dilation=d)
            buf[:, c_in + k : c_in + k + 1].copy_(out.clamp_min_(0))
        y = F.conv2d(buf, final_weight, final_bias)
        ctx.spec = spec
        ctx.save_for_backward(buf, final_weight, *params[0::2])
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):  # type: ignore[override]
        c_in, mode, units = ctx.spec
        buf, final_weight, *weights = ctx.saved_tensors
        h, w = buf.shape[-2:]
        conv_bwd = torch.ops.aten.convolution_backward
        needs = ctx.needs_input_grad  # (x, spec, final_w, final_b, w0, b0, w1, b1, ...)
        grad_y = grad_y.contiguous()
        gbuf, g_fw, g_fb = conv_bwd(
            grad_y, buf, final_weight, [final_weight.shape[0]], [1, 1], [0, 0], [1, 1],
            False, [0, 0], 1, [True, needs[2], needs[3]],
        )
        grads: list[torch.Tensor | None] = [None] * (2 * len(units))
        for k in range(len(units) - 1, -1, -1):
            n_in, d = units[k]
            ch = c_in + k
            # ReLU backward: the output is > 0 exactly where the pre-activation is > 0.
            g = gbuf[:, ch : ch + 1] * (buf[:, ch : ch + 1] > 0)
            inp = buf[:, :n_in]
            need_inp = n_in > c_in or needs[0]
            mask = [need_inp, needs[4 + 2 * k], needs[5 + 2 * k]]
            if _use_reflect(mode, d, h, w):
                g_inp, g_w, g_b = conv_bwd(
                    g, F.pad(inp, (d, d, d, d), mode="reflect"), weights[k], [1], [1, 1], [0, 0],
                    [d, d], False, [0, 0], 1, mask,
                )
                if need_inp:
                    g_inp = torch.ops.aten.reflection_pad2d_backward(g_inp, inp, [d, d, d, d])
            else:
                g_inp, g_w, g_b = conv_bwd(
                    g, inp, weights[k], [1], [1, 1], [d, d], [d, d], False, [0, 0], 1, mask,
                )
            if need_inp:
                gbuf[:, :n_in] += g_inp
            grads[2 * k], grads[2 * k + 1] = g_w, g_b
        g_x = gbuf[:, :c_in].clone() if needs[0] else None
        return (g_x, None, g_fw, g_fb, *grads)


class MSDNet(nn.Module):
    """Mixed-Scale Dense network mapping ``(batch, in_channels, y, x)`` to ``(batch, out_channels, y, x)``.

    Parameters
    ----------
    depth : int
        Number of layers (default 100).
    width : int
        Feature maps per layer (default 1).
    dilations : sequence of int, optional
        Dilations, cycled over the channels ``k = layer * width + j``; default ``1..10``.
    in_channels, out_channels : int
        Image channels in and out (1 for tomographic slices).
    padding_mode : {"reflect", "zeros"}
        Boundary handling of the 3x3 dilated convolutions (padding = dilation, so the size is
        preserved). Reflect padding needs the image to be larger than the dilation; layers
        whose dilation is too large for a (tiny) input fall back to zero padding.

    Notes
    -----
    Initialisation (our reading of Pelt & Sethian 2018): 3x3 weights are drawn from a normal
    distribution with standard deviation ``sqrt(2 / (9 * n_in))``, where ``n_in`` is the
    number of input channels of that convolution; all biases and the final 1x1 weights are
    zero, so an untrained network outputs zero (the mean of normalised data) and the first
    optimiser steps set up the output combination.
    """

    def __init__(
        self,
        depth: int = 100,
        width: int = 1,
        dilations: Sequence[int] | None = None,
        in_channels: int = 1,
        out_channels: int = 1,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if int(depth) < 1 or int(width) < 1:
            raise ValueError(f"MSDNet: depth and width must be >= 1, got depth={depth}, width={width}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError("MSDNet: in_channels and out_channels must be >= 1")
        dil = list(range(1, 11)) if dilations is None else [int(v) for v in dilations]
        if not dil or any(v < 1 for v in dil):
            raise ValueError(f"MSDNet: dilations must be a non-empty list of positive integers, got {dilations!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"MSDNet: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.depth, self.width = int(depth), int(width)
        self.dilations = dil
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.padding_mode = padding_mode

        units = []
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(self.depth):
            n_in = self.in_channels + i * self.width
            for j in range(self.width):
                k = i * self.width + j
                d = dil[k % len(dil)]
                units.append((n_in, d))
                wt = torch.empty(1, n_in, 3, 3)
                nn.init.normal_(wt, 0.0, math.sqrt(2.0 / (9.0 * n_in)))
                self.weights.append(nn.Parameter(wt))
                self.biases.append(nn.Parameter(torch.zeros(1)))
        self._spec = (self.in_channels, padding_mode, tuple(units))
        c_total = self.in_channels + self.depth * self.width
        self.final_weight = nn.Parameter(torch.zeros(self.out_channels, c_total, 1, 1))
        self.final_bias = nn.Parameter(torch.zeros(self.out_channels))

    @property
    def units(self) -> tuple[tuple[int, int], ...]:
        """``(n_inputs, dilation)`` of each output channel, in order."""
        return self._spec[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"MSDNet expects (batch, {self.in_channels}, y, x), got {tuple(x.shape)}"
            )
        params = []
        for wt, bs in zip(self.weights, self.biases):
            params += [wt, bs]
        return _MSDFunction.apply(x, self._spec, self.final_weight, self.final_bias, *params)

    def extra_repr(self) -> str:
        return (
            f"depth={self.depth}, width={self.width}, dilations={self.dilations}, "
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"padding_mode={self.padding_mode!r}"
        )
