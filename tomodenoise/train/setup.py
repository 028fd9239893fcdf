"""What a training run starts from: the checked data, the settings the recipe resolves (or
those of the run it resumes), the held-out slices, the training pairs and their
normalisation (:class:`Run`), and the network with its optimiser, fresh, warm-started or
restored from ``last.pt`` (:class:`TrainState`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.device import resolve_device
from tomodenoise.logs import summary
from tomodenoise.models import build_model
from tomodenoise.train.checkpoint import load_raw, primitive
from tomodenoise.train.data import N2IPairs, check_splits, compute_normalisation, split_items
from tomodenoise.train.distributed import Speedups, dist_info, speedups
from tomodenoise.train.recipe import AUTO_FIELDS, resolve_recipe
from tomodenoise.train.schedule import default_minutes
from tomodenoise.train.step import set_lr

__all__ = ["Run", "TrainState", "prepare_run", "start_state", "warm_start_weights", "with_input_channels"]

log = logging.getLogger("tomodenoise.train")


@dataclass
class Run:
    """What a training run is set up with; nothing here changes while it trains.

    ``cfg`` and ``model_cfg`` have every ``auto`` resolved; ``resume`` is the raw ``last.pt``
    being resumed (None for a new run); ``items`` are the (slice, split) pairs of an epoch
    times the patches per slice, ``per_rank`` this rank's share of them.
    """

    splits: np.ndarray
    cfg: TrainConfig
    model_cfg: ModelConfig
    out_dir: Path
    device: torch.device
    rank: int
    world: int
    resume: dict[str, Any] | None
    train_pairs: N2IPairs
    val_pairs: N2IPairs | None
    val_idx: np.ndarray
    norm: dict[str, float]
    fast: Speedups
    patch: tuple[int, int] | None
    items: int
    per_rank: int
    run_config: Any = None

    @property
    def k(self) -> int:
        return int(self.splits.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.per_rank / self.cfg.batch_size)

    @property
    def minutes(self) -> float:
        """The time budget in minutes: ``train.max_minutes``, or the device's default."""
        return self.cfg.max_minutes or default_minutes(self.device.type)


@dataclass
class TrainState:
    """What changes while a run trains, and what its checkpoints store: the network (in its
    DDP wrapper on several ranks), the optimiser, the history, the best epoch so far, the
    optimiser steps done and the training seconds before this process started."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    start_epoch: int = 0
    best_epoch: int = 0
    best_val: float | None = None
    step: int = 0
    elapsed_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_run(recon_splits: Any, cfg: TrainConfig, model_cfg: ModelConfig, out_dir: str | os.PathLike, *,
                normalisation: dict[str, float] | None = None, volume_shape: tuple[int, int, int] | None = None,
                run_config: Any = None) -> Run:
    """Check the data, resolve the settings and build the training pairs (see :func:`~tomodenoise.train.train_n2i`)."""
    splits = _checked(recon_splits)
    k, n_z = splits.shape[:2]
    out_dir = Path(out_dir)
    rank, world = dist_info()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    device = _rank_device(cfg.device, world)
    resume = load_raw(cfg.resume) if cfg.resume else None
    if resume is not None:
        val_idx = np.asarray(resume["val_slices"], dtype=np.int64)
        train_idx = np.setdiff1d(np.arange(n_z), val_idx)
        # the settings the interrupted run resolved, not a new choice (other device, ...)
        stored = resume.get("train_config") or {}
        cfg = cfg.model_copy(update={f: stored[f] for f in AUTO_FIELDS if getattr(cfg, f) == "auto" and f in stored})
    else:
        train_idx, val_idx = split_items(volume_shape or (1, 1, n_z), cfg.val_fraction, cfg.val_slices)
    recipe = resolve_recipe(cfg, model_cfg, image_shape=tuple(splits.shape[2:]), volume_shape=volume_shape or (1, 1, n_z),
                            n_train=len(train_idx), k=k, device_type=device.type, world=world)
    cfg, model_cfg = recipe.train, recipe.model
    if rank == 0:
        summary(log, recipe.line())
        for message in recipe.warnings:
            log.warning("%s", message)
    model_cfg = with_input_channels(model_cfg, 2 * cfg.neighbours + 1)
    if resume is not None:
        _check_resume(resume, cfg, model_cfg, k, val_idx, n_z)
    split_sum = splits.sum(axis=0, dtype=np.float64).astype(np.float32)
    nb = dict(neighbours=cfg.neighbours, volume_shape=volume_shape, neighbour_axis=cfg.neighbour_axis)
    train_pairs = N2IPairs(splits, cfg.strategy, train_idx, split_sum=split_sum, **nb)
    val_pairs = N2IPairs(splits, cfg.strategy, val_idx, split_sum=split_sum, **nb) if val_idx.size else None
    if resume is not None:
        norm = dict(resume["normalisation"])
    elif normalisation is not None:
        norm = {"mean": float(normalisation["mean"]), "std": float(normalisation["std"])}
    else:
        norm = compute_normalisation(train_pairs)
    ny, nx = train_pairs.shape
    patch = None if cfg.patch_size is None else (min(cfg.patch_size, ny), min(cfg.patch_size, nx))
    items = len(train_pairs) * (cfg.patches_per_slice if patch is not None else 1)
    per_rank = items // world if world > 1 else items
    if per_rank < 1:
        raise ValueError(f"{items} training items cannot be shared by {world} ranks")
    return Run(splits=splits, cfg=cfg, model_cfg=model_cfg, out_dir=out_dir, device=device, rank=rank, world=world,
               resume=resume, train_pairs=train_pairs, val_pairs=val_pairs, val_idx=val_idx, norm=norm,
               fast=speedups(device, cfg.precision), patch=patch, items=items, per_rank=per_rank,
               run_config=run_config)


def start_state(run: Run) -> TrainState:
    """The network and its optimiser: seeded, warm-started (``init_from``) or restored from the
    checkpoint being resumed, wrapped for DDP on several ranks."""
    cfg, resume = run.cfg, run.resume
    torch.manual_seed(cfg.seed)
    model = build_model(run.model_cfg.name, **run.model_cfg.params).to(run.device)
    if run.fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init_from and resume is None:  # warm start: weights only; optimiser, schedule, data are new
        model.load_state_dict(warm_start_weights(cfg.init_from, run.model_cfg))
        log.info("warm start from %s", cfg.init_from)
    state = TrainState(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr))
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
        state.optimizer.load_state_dict(resume["optimizer"])
        set_lr(state.optimizer, cfg.lr)  # this run's learning rate replaces the stored one
        state.start_epoch, state.best_epoch = int(resume["epoch"]), int(resume["best_epoch"])
        state.best_val, state.history = resume["best_val_loss"], list(resume["history"])
        state.step, state.elapsed_before = int(resume.get("steps", 0)), float(resume.get("elapsed_s", 0.0))
    if run.world > 1:
        state.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    return state


def _checked(recon_splits: Any) -> np.ndarray:
    splits = check_splits(recon_splits)
    for j in range(splits.shape[0]):  # one split at a time: a small temporary
        if not np.isfinite(splits[j]).all():
            raise ValueError(f"recon_splits contains NaN or inf values (split {j})")
    return splits


def _rank_device(setting: str, world: int) -> torch.device:
    """The device of ``train.device``; on several ranks, ``cuda`` is this rank's GPU (``LOCAL_RANK``)."""
    device = resolve_device(setting)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _check_resume(resume: dict[str, Any], cfg: TrainConfig, model_cfg: ModelConfig, k: int, val_idx: np.ndarray,
                  n_z: int) -> None:
    """The checkpoint being resumed was trained with this network, split count, strategy and data."""
    stored_model = resume["model"]
    want = model_cfg.model_dump(mode="json")
    if stored_model["name"] != want["name"] or stored_model["params"] != primitive(want["params"]):
        raise ValueError(
            f"resume checkpoint {cfg.resume} has model {stored_model}, the configuration asks for "
            f"{{'name': {want['name']!r}, 'params': {want['params']!r}}}"
        )
    if resume["k"] != k or resume["strategy"] != cfg.strategy:
        raise ValueError(
            f"resume checkpoint {cfg.resume} was trained with k={resume['k']}, strategy={resume['strategy']!r}; "
            f"got k={k}, strategy={cfg.strategy!r}"
        )
    if val_idx.size and val_idx.max() >= n_z:
        raise ValueError(f"resume checkpoint holds out slices {val_idx.tolist()} but the data has {n_z} slices")


def with_input_channels(model_cfg: ModelConfig, channels: int) -> ModelConfig:
    """``model_cfg`` with ``in_channels`` set for ``channels`` input channels (neighbours)."""
    from tomodenoise.models import model_defaults

    have = int(model_cfg.params.get("in_channels", 1))
    if have == channels:
        return model_cfg
    defaults = model_defaults(model_cfg.name)
    if "in_channels" not in defaults or ("out_channels" not in defaults and channels != 1):
        raise ValueError(f"model {model_cfg.name!r} cannot take {channels} input channels (train.neighbours); "
                         "set train.neighbours: 0")
    if "in_channels" in model_cfg.params:
        raise ValueError(f"model.params.in_channels = {have} but train.neighbours needs {channels} input channels; "
                         "leave in_channels unset")
    return model_cfg.model_copy(update={"params": {**model_cfg.params, "in_channels": channels}})


def warm_start_weights(path: str | os.PathLike, model_cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of checkpoint ``path`` for a warm start, checked against ``model_cfg``."""
    raw = load_raw(path)
    want = model_cfg.model_dump(mode="json")
    have = raw["model"]
    if have["name"] != want["name"] or have["params"] != primitive(want["params"]):
        raise ValueError(f"train.init_from {path} holds a {have['name']} {have['params']}; the configuration "
                         f"asks for {want['name']} {want['params']}: warm start needs the same network")
    return raw["state_dict"]
