"""The ingest stage: read the raw scan, preprocess it, write the sinogram store."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..config import RunConfig
from ..io.store import ScanStore
from .keys import input_identity, invalidate_from, scan_id_for, stage_current, stage_keys, store_for

__all__ = ["ingest", "read_sinograms", "refuse_clash", "refuse_splits"]

log = logging.getLogger(__name__)


def refuse_clash(store: ScanStore, cfg: RunConfig, identity: dict) -> None:
    """Refuse a store that holds another source under the same scan id (unless ``output.overwrite``)."""
    if store.exists():
        previous = store.attrs.get("source_identity", {}).get("path")
        if previous and previous != identity["path"] and not cfg.output.overwrite:
            raise FileExistsError(
                f"{store.root} already holds the results of {previous}, not {identity['path']}; "
                "set input.scan_id to a different name or output.overwrite=true to replace it")


def refuse_splits(cfg: RunConfig, sg) -> None:
    """Refuse more splits than the projections of the shortest time step (or of the scan)."""
    if cfg.splits.k > sg.min_projections:
        where = "the shortest time step of " if sg.modality == "dynamic" else ""
        raise ValueError(f"splits.k = {cfg.splits.k} is more than the {sg.min_projections} projections of {where}"
                         f"{cfg.input.path}: use {'longer time steps or ' if where else ''}fewer splits")


def read_sinograms(cfg: RunConfig) -> tuple[Any, Any]:
    """``(raw scan, sinograms)``: the scan read and preprocessed, checked, nothing written."""
    from ..io import read_scan
    from .modalities import build_sinograms

    raw = read_scan(
        cfg.input.path,
        format=cfg.input.format,
        angles_file=cfg.input.angles_file,
        angles_unit=cfg.input.angles_unit,
        slices=cfg.input.slices,
        flats=cfg.input.flats,
        darks=cfg.input.darks,
        entry=cfg.input.entry,
    )
    if cfg.splits.k > raw.n_angles:
        raise ValueError(f"splits.k = {cfg.splits.k} is more than the {raw.n_angles} projection angles of "
                         f"{cfg.input.path}")
    sg = build_sinograms(raw, cfg)
    refuse_splits(cfg, sg)
    return raw, sg


def ingest(cfg: RunConfig, prepared: tuple[Any, Any] | None = None) -> ScanStore:
    """Read the raw scan, preprocess it and write the sinogram store.

    Static, dynamic (time steps cut from the projection stream) and XRD-CT scans (one
    sinogram per diffraction channel) all become one store ``(time, channel, z, angle,
    det)``: :mod:`tomodenoise.pipeline.modalities`.

    Skipped when the store already holds this input (same files, sizes and mtimes) ingested
    with the same settings. Input and configuration errors are raised before anything is
    written. A store that holds a *different* source under the same scan id is refused
    unless ``output.overwrite`` is set (two ``scan.h5`` in different folders would otherwise
    overwrite each other's results).
    """
    if not cfg.input.path:
        raise ValueError("input.path is not set: give the scan to denoise")
    store = store_for(cfg)
    identity = input_identity(cfg.input.path)
    key = stage_keys(cfg, identity)["ingest"]
    if stage_current(store, "ingest", key):
        log.info("ingest already complete in %s", store.zarr_path)
        return store
    refuse_clash(store, cfg, identity)
    t0 = time.perf_counter()
    raw, sg = prepared if prepared is not None else read_sinograms(cfg)
    n_det = sg.sinogram.shape[-1]
    z0 = cfg.input.slices[0] if cfg.input.slices else 0
    geometry = {
        "center": float(sg.center),
        "n_det": int(n_det),
        "n_pixels": int(cfg.recon.n_pixels or n_det),
        "beam": "parallel",
    }
    invalidate_from(store, "ingest")
    store = ScanStore.create(
        store.root, sg.sinogram, sg.angles,
        z=np.arange(z0, z0 + sg.sinogram.shape[2]), z_chunk=cfg.recon.z_chunk,
        time=sg.time, time_attrs=sg.time_attrs, channel=sg.channel, channel_attrs=sg.channel_attrs, coords=sg.coords,
        attrs={
            "scan_id": scan_id_for(cfg),
            "source": str(raw.source),
            "source_identity": identity,
            "modality": sg.modality,
            "config": cfg.model_dump(mode="json"),
            "geometry": geometry,
            "reader": dict(raw.attrs),  # format, rows, flats_source/darks_source, counts
            "preprocess": dict(sg.info, n_clamped=int(sg.n_clamped)),  # incl. projection_order, warnings
        },
    )
    store.mark_stage("ingest", key=key, seconds=round(time.perf_counter() - t0, 3), center=float(sg.center),
                     n_clamped=int(sg.n_clamped), modality=sg.modality,
                     time_steps=int(sg.sinogram.shape[0]), channels=int(sg.sinogram.shape[1]))
    return store
