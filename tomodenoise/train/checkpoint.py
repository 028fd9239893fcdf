"""Noise2Inverse checkpoints: plain dicts of tensors and primitive containers (readable with
``torch.load(path, weights_only=True)``), written to a temporary name and renamed, and read
back as a network in eval mode plus its metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.models import build_model
from tomodenoise.device import resolve_device
from tomodenoise.train.distributed import unwrap

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "atomic_save",
    "build_checkpoint",
    "load_checkpoint",
    "load_raw",
    "primitive",
]

CHECKPOINT_FORMAT = "tomodenoise-n2i"
CHECKPOINT_VERSION = 1


def primitive(obj: Any, where: str = "value") -> Any:
    """Convert to tensors/primitives/lists/dicts only (for ``weights_only`` checkpoints)."""
    if obj is None:
        return None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, str):
        return str(obj)  # also str subclasses (enums, TorchVersion), which weights_only rejects
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {str(k): primitive(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [primitive(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "model_dump"):
        return primitive(obj.model_dump(mode="json"), where)
    raise TypeError(f"cannot store {where} of type {type(obj).__name__} in a checkpoint")


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- checkpoints -----------------------------------------------------------------------------
def build_checkpoint(
    *,
    kind: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    k: int,
    normalisation: dict[str, float],
    epoch: int,
    best_epoch: int,
    best_val: float | None,
    history: list[dict[str, Any]],
    val_slices: list[int],
    shape: tuple[int, ...],
    run_config: Any,
    stopped: str | None,
    steps: int = 0,
    elapsed_s: float = 0.0,
) -> dict[str, Any]:
    import tomodenoise

    model_dump = model_cfg.model_dump(mode="json")
    last = history[-1] if history else {}
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "model": {"name": model_dump["name"], "params": primitive(model_dump["params"], "model params")},
        "state_dict": {k_: v.detach().cpu() for k_, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "normalisation": {"mean": float(normalisation["mean"]), "std": float(normalisation["std"])},
        "strategy": cfg.strategy,
        "k": int(k),
        "split": {"k": int(k), "strategy": cfg.strategy},
        "train_config": primitive(cfg.model_dump(mode="json"), "train config"),
        "run_config": primitive(run_config, "run_config"),
        "epoch": int(epoch),
        "steps": int(steps),  # optimiser steps and training seconds so far: a resumed run
        "elapsed_s": float(elapsed_s),  # continues the schedule and the time budget
        "best_epoch": int(best_epoch),
        "best_val_loss": None if best_val is None else float(best_val),
        "history": primitive(history, "history"),
        "val_slices": [int(v) for v in val_slices],
        "data_shape": [int(v) for v in shape],
        "metrics": {
            "best_val_loss": None if best_val is None else float(best_val),
            "best_epoch": int(best_epoch),
            "train_loss": last.get("train_loss"),
            "val_loss": last.get("val_loss"),
            "stopped": stopped,
        },
        "versions": {"tomodenoise": str(tomodenoise.__version__), "torch": str(torch.__version__)},
    }


def load_raw(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tomodenoise N2I checkpoint (format {CHECKPOINT_FORMAT!r})")
    return ckpt


def checkpoint_neighbours(meta: dict[str, Any]) -> int:
    """Neighbour slices per side the checkpoint's network takes as extra channels (0 before they existed)."""
    return int((meta.get("train_config") or {}).get("neighbours", 0))


def checkpoint_neighbour_axis(meta: dict[str, Any]) -> str:
    """The axis of those neighbours: ``"z"``, ``"time"`` or ``"channel"``."""
    return str((meta.get("train_config") or {}).get("neighbour_axis", "z"))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint written by :func:`train_n2i` (``torch.load(weights_only=True)``).

    Returns
    -------
    model : torch.nn.Module
        The network on ``device``, in eval mode.
    meta : dict
        Everything else in the checkpoint (without weights and optimiser state):
        ``model`` (name, params), ``normalisation``, ``strategy``, ``k``, ``split``,
        ``train_config``, ``run_config``, ``epoch``, ``best_epoch``, ``best_val_loss``,
        ``history``, ``val_slices``, ``metrics``, ``versions``.
    """
    ckpt = load_raw(path)
    model = build_model(ckpt["model"]["name"], **ckpt["model"]["params"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(resolve_device(device)).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer")}
    return model, meta
