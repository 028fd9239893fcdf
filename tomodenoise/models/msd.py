"""Mixed-Scale Dense network (MS-D; Pelt & Sethian, PNAS 2018), in pure PyTorch.

Every layer sees all previous feature maps (the input included), applies 3x3 dilated
convolutions followed by ReLU, and a final 1x1 convolution combines *all* feature maps
(input and every layer's output) into the output.

Memory
------
A naive implementation concatenates all previous feature maps at every layer
(``torch.cat``), which autograd keeps alive for backward: memory grows quadratically with
depth. Here one buffer of shape ``(batch, in_channels + depth * width, y, x)`` is
preallocated; each layer writes its output into its own channel slice and reads a view of
all previous channels. Autograd does not allow a buffer to be modified after a view of it
was saved for backward, so forward and backward are written out by hand in one
:class:`torch.autograd.Function`. Backward keeps one gradient buffer of the same shape and
walks the layers in reverse (no recomputation of the forward pass). Memory for a training
step is about two buffers plus per-layer temporaries of ``9 * width`` maps: linear in depth.

Speed
-----
A 3x3 convolution with one output channel is a poor fit for the convolution kernels
(1 output channel, large dilations). Each layer is instead one matrix product of its
``(9 * width, n_inputs)`` tap weights with the ``(n_inputs, y * x)`` buffer view (BLAS,
no copy) followed by a shifted sum of the 9 tap maps (padding applied to those 9 maps,
which is the same as padding the input because the channel mix is pointwise).

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

    ``spec = (in_channels, padding_mode, layers)`` where ``layers`` holds, per layer,
    ``(n_inputs, dilations)``: the layer reads channels ``[0, n_inputs)`` of the buffer and
    writes ``len(dilations)`` channels after them. ``params`` are ``w_0, b_0, w_1, b_1, ...``
    per output channel, each ``w_k`` a ``(1, n_inputs, 3, 3)`` convolution kernel.

    A 3x3 convolution with one output channel is computed as a matrix product followed by
    a shifted sum: ``Y = W @ X`` with ``W`` of shape ``(9, n_inputs)`` (one row per kernel
    tap) and ``X`` the ``(n_inputs, y*x)`` input, then ``out = sum_t shift_t(pad(Y_t))``.
    Padding commutes with the channel mix, so only the 9 tap maps are padded, never the
    ``n_inputs`` input maps; and the product reads a strided view of the buffer without
    copying it. Backward uses the transposed products, accumulating the input gradient in
    place (``baddbmm_``) into the gradient buffer.
    """

    @staticmethod
    def forward(ctx, x, spec, final_weight, final_bias, *params):  # type: ignore[override]
        c_in, mode, layers = spec
        b, _, h, w = x.shape
        c_total = c_in + sum(len(dils) for _, dils in layers)
        buf = x.new_empty((b, c_total, h, w))
        buf[:, :c_in].copy_(x)
        k = 0
        for n_in, dils in layers:
            nw = len(dils)
            wmat = torch.cat([_taps(params[2 * (k + j)]) for j in range(nw)], 0)  # (9*nw, n_in)
            y = torch.matmul(wmat, buf[:, :n_in].view(b, n_in, h * w)).view(b, nw, 9, h, w)
            for j, d in enumerate(dils):
                out = _shift_sum(y[:, j], d, mode) + params[2 * k + 1].view(1, 1, 1)
                buf[:, c_in + k].copy_(out.clamp_min_(0))
                k += 1
        out = F.conv2d(buf, final_weight, final_bias)
        ctx.spec = spec
        ctx.save_for_backward(buf, final_weight, *params[0::2])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        c_in, mode, layers = ctx.spec
        buf, final_weight, *weights = ctx.saved_tensors
        b, _, h, w = buf.shape
        needs = ctx.needs_input_grad  # (x, spec, final_w, final_b, w0, b0, w1, b1, ...)
        gbuf, g_fw, g_fb = torch.ops.aten.convolution_backward(
            grad_out.contiguous(), buf, final_weight, [final_weight.shape[0]], [1, 1], [0, 0],
            [1, 1], False, [0, 0], 1, [True, needs[2], needs[3]],
        )
        grads: list[torch.Tensor | None] = [None] * (2 * len(weights))
        k_end = len(weights)
        for n_in, dils in reversed(layers):
            nw = len(dils)
            k0 = k_end - nw
            gy = buf.new_empty((b, nw, 9, h, w))
            for j, d in enumerate(dils):
                ch = c_in + k0 + j
                # ReLU backward: the output is > 0 exactly where the pre-activation is.
                g = torch.ops.aten.threshold_backward(gbuf[:, ch], buf[:, ch], 0)
                grads[2 * (k0 + j) + 1] = g.sum().reshape(1)
                _shift_sum_backward(g, d, mode, gy[:, j])
            gy = gy.view(b, nw * 9, h * w)
            inp = buf[:, :n_in].view(b, n_in, h * w)
            gw = torch.matmul(gy, inp.transpose(1, 2)).sum(0)  # (9*nw, n_in)
            for j in range(nw):
                grads[2 * (k0 + j)] = gw[9 * j : 9 * j + 9].t().reshape(1, n_in, 3, 3)
            if n_in > c_in or needs[0]:
                wmat = torch.cat([_taps(weights[k0 + j]) for j in range(nw)], 0)
                gbuf[:, :n_in].view(b, n_in, h * w).baddbmm_(wmat.t().expand(b, n_in, 9 * nw), gy)
            k_end = k0
        g_x = gbuf[:, :c_in].clone() if needs[0] else None
        return (g_x, None, g_fw, g_fb, *grads)


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """``(1, n, 3, 3)`` kernel -> ``(9, n)`` matrix, row ``t = 3 * ky + kx``."""
    return weight.reshape(weight.shape[1], 9).t()


def _shift_sum(y: torch.Tensor, d: int, mode: str) -> torch.Tensor:
    """``(b, 9, h, w)`` tap maps -> ``(b, h, w)``: the dilated 3x3 convolution's output."""
    h, w = y.shape[-2:]
    if _use_reflect(mode, d, h, w):
        yp = F.pad(y, (d, d, d, d), mode="reflect")
    else:
        yp = F.pad(y, (d, d, d, d))
    out = yp[:, 0, :h, :w].clone()
    for t in range(1, 9):
        ky, kx = divmod(t, 3)
        out += yp[:, t, ky * d : ky * d + h, kx * d : kx * d + w]
    return out


def _shift_sum_backward(g: torch.Tensor, d: int, mode: str, out: torch.Tensor) -> None:
    """Gradient of :func:`_shift_sum` for output gradient ``g (b, h, w)``, written to ``out (b, 9, h, w)``."""
    b, h, w = g.shape
    gp = g.new_zeros((b, 9, h + 2 * d, w + 2 * d))
    for t in range(9):
        ky, kx = divmod(t, 3)
        gp[:, t, ky * d : ky * d + h, kx * d : kx * d + w] = g
    if _use_reflect(mode, d, h, w):
        out.copy_(torch.ops.aten.reflection_pad2d_backward(gp, out, [d, d, d, d]))
    else:
        out.copy_(gp[:, :, d : d + h, d : d + w])


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

        layers = []
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(self.depth):
            n_in = self.in_channels + i * self.width
            dils = []
            for j in range(self.width):
                dils.append(dil[(i * self.width + j) % len(dil)])
                wt = torch.empty(1, n_in, 3, 3)
                nn.init.normal_(wt, 0.0, math.sqrt(2.0 / (9.0 * n_in)))
                self.weights.append(nn.Parameter(wt))
                self.biases.append(nn.Parameter(torch.zeros(1)))
            layers.append((n_in, tuple(dils)))
        self._spec = (self.in_channels, padding_mode, tuple(layers))
        c_total = self.in_channels + self.depth * self.width
        self.final_weight = nn.Parameter(torch.zeros(self.out_channels, c_total, 1, 1))
        self.final_bias = nn.Parameter(torch.zeros(self.out_channels))

    @property
    def units(self) -> tuple[tuple[int, int], ...]:
        """``(n_inputs, dilation)`` of each output channel ``k``, in order."""
        return tuple((n_in, d) for n_in, dils in self._spec[2] for d in dils)

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
