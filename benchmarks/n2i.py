"""Noise2Inverse in the benchmarks: one network trained with the production loop
(:func:`tomodenoise.train.train_n2i`) on the noisy splits only, its PSNR against the ground
truth recorded as training goes (a curve of PSNR against training seconds), then every
slice denoised with ``best.pt``, the epoch that the held-out N2I loss picked.

The curve is measured on a few central slices from ``last.pt`` after the epochs that end past
each point of :data:`CURVE_SECONDS`; the training clock stops while the curve is measured,
so scoring never eats the time budget, and the curve's seconds are training seconds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import FoamData, log

__all__ = ["CURVE_SECONDS", "NetworkSetup", "PausableClock", "default_network_setups", "time_to_reach",
           "train_network"]

#: Training seconds after which the curve gets a point (then every 5 minutes).
CURVE_SECONDS = (15, 30, 45, 60, 90, 120, 150, 180, 240, 300, 360, 420, 480, 600, 720, 900)


@dataclass
class NetworkSetup:
    """How one N2I network is trained in the benchmark (recorded in metrics.json)."""

    model: str
    params: dict[str, Any]
    patch_size: int | str | None = 128
    batch_size: int | str = 8
    patches_per_slice: int | str = 4
    lr: float | str = 1e-3
    schedule: str = "cosine"
    warmup: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)
    run_defaults: bool = False

    @classmethod
    def defaults(cls) -> "NetworkSetup":
        """``tomodenoise run``'s own defaults (the recipe sized from the scan): what users get."""
        return cls("msd", {}, patch_size="auto", batch_size="auto", patches_per_slice="auto", lr="auto",
                   extra={"neighbours": "auto"}, run_defaults=True)


def default_network_setups() -> dict[str, NetworkSetup]:
    """Network sizes chosen by measurement on a 2-core CPU (benchmarks/RESULTS.md, "time to quality").

    U-Net: 3 poolings, 16 base channels, batch norm (0.48 M parameters; one step of 8 x 128^2
    patches costs about 2.7x less than the registry's default 4 x 32 U-Net). MS-D: depth 30,
    width 1 (the published network is 100 x 1; in the same minutes depth 30 sees ~3x more data).
    Both see two neighbour slices on each side as extra input channels (``train.neighbours``):
    in 5 minutes that gave MS-D 20.70 dB against 19.39 dB without, U-Net 19.63 against 19.00.
    """
    return {
        "n2i": NetworkSetup.defaults(),
        "n2i_msd": NetworkSetup("msd", {"depth": 30, "width": 1}, batch_size=4, lr=2e-3,
                                extra={"neighbours": 2}),
        "n2i_unet": NetworkSetup("unet", {"depth": 3, "base_channels": 16}, batch_size=8, lr=1e-3,
                                 extra={"neighbours": 2}),
    }


class PausableClock:
    """``time.monotonic`` minus the time spent inside :meth:`paused`."""

    def __init__(self) -> None:
        self._paused = 0.0

    def __call__(self) -> float:
        return time.monotonic() - self._paused

    @contextlib.contextmanager
    def paused(self):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._paused += time.monotonic() - t0


def val_fraction_for(n_slices: int) -> float:
    """One slice in ~8 held out (at least one when there are two or more) for the N2I validation loss."""
    n_val = max(1, round(n_slices / 8)) if n_slices >= 2 else 0
    return n_val / n_slices if n_val else 0.0


def denoise_with(checkpoint: Path, splits: np.ndarray, device: Any, progress: bool = False) -> np.ndarray:
    """Leave-one-out denoising of ``splits`` (K, z, y, x) with a checkpoint (X:1)."""
    from tomodenoise.denoise import denoise_checkpoint

    return np.asarray(denoise_checkpoint(checkpoint, splits, batch_size=4, device=device, progress=progress),
                      dtype=np.float32)


def _train_config(name: str, setup: NetworkSetup, n_slices: int, minutes: float, **common: Any):
    """The :class:`tomodenoise.config.TrainConfig` of ``setup`` (``common``: seed, device, progress,
    init_from); logs what is trained."""
    from tomodenoise.config import TrainConfig

    warm = ", warm start" if common.get("init_from") else ""
    if setup.run_defaults:  # exactly what `tomodenoise run` trains, with the benchmark's budget
        log(f"{name}: training with tomodenoise run's defaults (the recipe sized from the scan) for {minutes:g} min"
            f"{warm}")
        return TrainConfig(max_minutes=minutes, **common)
    log(f"{name}: training {setup.model} {setup.params} for {minutes:g} min (patches {setup.patch_size}, batch "
        f"{setup.batch_size}, lr {setup.lr:g}, {setup.schedule} schedule{warm})")
    return TrainConfig(
        strategy="X:1", epochs=100_000, batch_size=setup.batch_size, lr=setup.lr, patch_size=setup.patch_size,
        patches_per_slice=setup.patches_per_slice, val_fraction=val_fraction_for(n_slices), early_stopping=0,
        max_minutes=minutes, augment=True, schedule=setup.schedule, warmup=setup.warmup, **common, **setup.extra,
    )


def _training_record(setup: NetworkSetup, result: Any, tcfg: Any, *, minutes: float, device: str,
                     train_seconds: float, inference_seconds: float) -> dict[str, Any]:
    """The info dict of :func:`train_network`, less the curve and the history."""
    from tomodenoise.models import build_model

    used, net = result.train_config, result.model_config  # every auto resolved by the recipe
    last = result.history[-1] if result.history else None
    return {
        "model": net["name"], "params": net["params"], "run_defaults": setup.run_defaults,
        "n_parameters": int(sum(p.numel() for p in build_model(net["name"], **net["params"]).parameters())),
        "patch_size": used["patch_size"], "batch_size": used["batch_size"],
        "patches_per_slice": used["patches_per_slice"], "neighbours": used["neighbours"],
        "lr": used["lr"], "schedule": used["schedule"], "warmup": used["warmup"], "init_from": tcfg.init_from,
        "budget": result.budget, "val_fraction": tcfg.val_fraction, "val_slices": list(result.val_slices),
        "stopped": result.stopped, "augment": True, "max_minutes": minutes, "device": device,
        "epochs_run": len(result.history), "steps": int(last["step"]) if last else 0, "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss, "train_seconds": train_seconds,
        "training_seconds": float(last["elapsed_s"]) if last else 0.0, "inference_seconds": inference_seconds,
        "checkpoint": str(result.checkpoint),
    }


def train_network(name: str, setup: NetworkSetup, data: FoamData, minutes: float, out: Path, *, seed: int = 0,
                  progress: bool = True, device: str = "auto", curve_slices: int = 4, init_from: str | None = None,
                  curve_seconds: tuple[float, ...] = CURVE_SECONDS) -> tuple[np.ndarray, dict[str, Any]]:
    """Train ``setup`` with Noise2Inverse (X:1) for ``minutes``; denoise all slices with ``best.pt``.

    Returns the denoised volume and an info dict with the training history and the ``curve``:
    ``[{"seconds", "step", "epoch", "psnr", "val_loss"}, ...]`` (PSNR on ``curve_slices``
    central slices, training seconds).
    """
    from tomodenoise.config import ModelConfig
    from tomodenoise.logs import bars_wanted
    from tomodenoise.train import resolve_device, train_n2i

    dev = resolve_device(device)
    splits = data.splits
    tcfg = _train_config(name, setup, splits.shape[1], minutes, seed=seed, device=device, progress=progress,
                         init_from=init_from)
    run_dir = out / "models" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("best.pt", "last.pt"):  # a new run, not a resume of an older one
        (run_dir / stale).unlink(missing_ok=True)
    idx = data.central(curve_slices)
    sub = splits[:, idx]
    clock = PausableClock()
    curve: list[dict[str, Any]] = []
    pending = list(curve_seconds)

    def point(entry: dict[str, Any], path: Path) -> None:
        with clock.paused():
            img = denoise_with(path, sub, dev)
            curve.append({"seconds": float(entry["elapsed_s"]), "step": int(entry["step"]), "epoch": int(entry["epoch"]),
                          "psnr": data.scorer.psnr(img, idx), "val_loss": entry.get("val_loss")})

    def on_epoch(epoch: int, epochs: int, entry: dict[str, Any]) -> None:
        t = float(entry["elapsed_s"])
        if pending and t >= pending[0]:
            while pending and t >= pending[0]:
                pending.pop(0)
            if not pending:
                pending.append(t + 300.0)
            point(entry, run_dir / "last.pt")

    t0 = time.perf_counter()
    result = train_n2i(splits, tcfg, ModelConfig(name=setup.model, params=dict(setup.params)), run_dir,
                       run_config={"benchmark": "foam", "method": name}, on_epoch=on_epoch, clock=clock)
    t_train = time.perf_counter() - t0
    last = result.history[-1] if result.history else None
    if last is not None and (not curve or curve[-1]["epoch"] != last["epoch"]):
        point(last, run_dir / "last.pt")
    t1 = time.perf_counter()
    den = denoise_with(result.checkpoint, splits, dev, progress and bars_wanted())
    info = _training_record(setup, result, tcfg, minutes=minutes, device=str(dev), train_seconds=t_train,
                            inference_seconds=time.perf_counter() - t1)
    info.update({"curve_slices": [int(data.rows[i]) for i in idx], "curve": curve, "history": result.history})
    return den, info


def time_to_reach(points: list[dict[str, Any]], level: float, key: str = "psnr",
                  seconds_key: str = "seconds") -> float | None:
    """Training seconds of the first point at or past ``level`` (None if never).

    ``points``: a curve (``seconds``) or a training history (``seconds_key="elapsed_s"``).
    For ``val_loss`` "past" means at or below. Points are discrete: an upper bound.
    """
    for p in points:
        v = p.get(key)
        if v is None:
            continue
        if (v <= level) if key == "val_loss" else (v >= level):
            return float(p[seconds_key])
    return None
