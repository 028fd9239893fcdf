"""One optimisation step of Noise2Inverse training, the same on one process and on every DDP rank.

``train_step`` sets the learning rate the schedule gives, computes the MSE between the
network's output for the input splits and the target split, back-propagates (DDP averages
the gradients across ranks inside ``backward``), clips the gradients' global norm and steps
the optimiser. Batches come from :func:`tomodenoise.train.data.make_batch`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["set_lr", "train_step"]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor,
               lr: float, grad_clip: float | None = None, autocast: torch.dtype | None = None) -> torch.Tensor:
    """One step at learning rate ``lr``; returns the batch's loss (a detached 0-d tensor).

    Parameters
    ----------
    model, optimizer
        The network (or its DDP wrapper) in training mode, and its optimiser.
    x, t : torch.Tensor, shape (batch, 1, y, x)
        Inputs (mean of the other splits, X:1) and targets (the held-out split), normalised.
    lr : float
        This step's learning rate (the schedule's).
    grad_clip : float, optional
        Clip the global gradient norm to this value (no clipping when None).
    autocast : torch.dtype, optional
        Run the forward pass under autocast to this dtype (``torch.bfloat16`` on GPUs); the
        loss is computed in float32.
    """
    set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        y = model(x)
    loss = F.mse_loss(y.float(), t)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()
