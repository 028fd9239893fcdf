"""The held-out N2I loss: how a network does on slices it never trained on, measured against
the noisy targets (:func:`n2i_validation_loss`), and its value after every epoch of a run
(:class:`Validation`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tomodenoise.device import resolve_device
from tomodenoise.train.data import N2IPairs, as_batch
from tomodenoise.train.distributed import from_rank0, unwrap

__all__ = ["Validation", "n2i_validation_loss"]


@torch.no_grad()
def n2i_validation_loss(
    model: nn.Module,
    pairs: N2IPairs,
    normalisation: dict[str, float] | None,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
) -> float:
    """N2I loss on whole slices: mean squared error between ``model(input)`` and the noisy
    target over all slices of ``pairs`` and all K rotations, in normalised units.

    Its minimum is not zero: it includes the target's noise variance, so compare values
    only between models/epochs on the same data.
    """
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    items = [(int(z), j) for z in pairs.slices for j in range(pairs.k)]
    for i in range(0, len(items), batch_size):
        chunk = [pairs.pair(z, j) for z, j in items[i : i + batch_size]]
        x = as_batch([c[0] for c in chunk], normalisation).to(device)
        t = as_batch([c[1] for c in chunk], normalisation).to(device)
        total += float(F.mse_loss(model(x), t, reduction="sum"))
        n += t.numel()
    model.train(was_training)
    return total / max(n, 1)


class Validation:
    """After every epoch: the loss that decides ``best.pt`` and early stopping.

    The held-out N2I loss (:func:`n2i_validation_loss`, rank 0's value on every rank), put in
    the epoch's history entry as ``val_loss``; the training loss when nothing is held out.
    """

    def __init__(self, pairs: N2IPairs | None, normalisation: dict[str, float], batch_size: int,
                 device: torch.device, world: int) -> None:
        self.pairs, self.norm, self.batch_size, self.device, self.world = pairs, normalisation, batch_size, device, world

    def __call__(self, model: nn.Module, entry: dict[str, Any]) -> float:
        if self.pairs is None:
            return entry["train_loss"]
        loss = n2i_validation_loss(unwrap(model), self.pairs, self.norm, batch_size=self.batch_size, device=self.device)
        if self.world > 1:  # every rank validates the same slices; keep them in agreement
            loss = from_rank0([loss], self.device)[0]
        entry["val_loss"] = float(loss)
        return float(loss)
