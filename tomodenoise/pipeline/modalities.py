"""From a raw scan to the store's sinograms ``(time, channel, z, angle, det)``, per modality.

- static micro-CT: one volume (time = 1, channel = 1): flat/dark, -log, centre, angles sorted;
- dynamic 4D: the projection stream (acquisition order, continuous rotation) is preprocessed
  as a whole, then cut into time steps by rotation angle or by time
  (:func:`tomodenoise.splits.time_windows`); each step keeps its own angles (steps may hold
  different numbers of projections; shorter ones are padded, see
  :meth:`~tomodenoise.io.store.ScanStore.create`); the centre is found on the first step;
- XRD-CT: C diffraction-channel sinograms of one pencil-beam scan (``RawScan.channels``),
  already intensities (no -log); the angles (often unsorted, over a full turn) are sorted
  once for all channels and the centre is found on their sum.

The angles of a static or XRD-CT scan are checked as one rotation (duplicated angles, a span
that is neither about 180 nor about 360 degrees: :func:`tomodenoise.preprocess.preprocess`);
every modality is checked for fewer than :data:`MIN_PROJECTIONS_PER_SPLIT` projections per
split. Both are warnings in ``info["warnings"]``, logged once as they arise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import RunConfig
from ..io import RawScan, ScanError
from ..logs import summary
from ..splits import continuous_rotation, time_windows

__all__ = ["MIN_PROJECTIONS_PER_SPLIT", "Sinograms", "build_sinograms", "splits_warning", "window_mode"]

log = logging.getLogger(__name__)

#: ``time.window: auto`` cuts the stream into angle windows when its continuous rotation in
#: acquisition order (:func:`tomodenoise.splits.continuous_rotation`) exceeds this many turns.
AUTO_DYNAMIC_TURNS = 1.5

#: Fewer projections than this in each split (of the shortest time step) are warned about:
#: each split's FBP would be mostly streaks.
MIN_PROJECTIONS_PER_SPLIT = 8


@dataclass
class Sinograms:
    """What ingest writes: the 5-D sinogram and its coordinates."""

    sinogram: np.ndarray  # (time, channel, z, angle, det)
    angles: np.ndarray  # (angle,) or (time, angle) radians, NaN-padded
    center: float
    n_clamped: int
    info: dict[str, Any]
    modality: str
    time: np.ndarray | None = None
    time_attrs: dict[str, Any] = field(default_factory=dict)
    channel: np.ndarray | None = None
    channel_attrs: dict[str, Any] = field(default_factory=dict)
    coords: dict[str, Any] = field(default_factory=dict)

    @property
    def min_projections(self) -> int:
        """Projections of the shortest time step (the most splits a step can take)."""
        a = np.atleast_2d(self.angles)
        return int(np.isfinite(a).sum(axis=1).min())


def _preprocess(raw: RawScan, cfg: RunConfig, **kw: Any):
    from ..preprocess import preprocess

    p = cfg.preprocess
    return preprocess(raw, center=p.center, log_min=p.log_min, center_search=p.center_search,
                      max_clamped_fraction=p.max_clamped_fraction, **kw)


def window_mode(raw: RawScan, cfg: RunConfig) -> str | None:
    """``"angle"``, ``"time"`` or None (static): how ``time.window`` cuts this scan.

    ``auto``: time windows when ``time.seconds`` is set; angle windows when the projections,
    in acquisition order, are a continuous rotation of more than :data:`AUTO_DYNAMIC_TURNS`
    turns (not when the angles merely cover a turn, in any order); else static. A scan read
    as dynamic says so on the console.
    """
    mode = cfg.time.window
    if mode == "none":
        return None
    if mode in ("angle", "time"):
        return mode
    if cfg.time.seconds is not None:
        summary(log, f"{raw.source}: read as a dynamic scan, one time step per {cfg.time.seconds:g} s "
                     "(time.seconds; time.window: none for a static scan)")
        return "time"
    order = _acquisition_permutation(raw)
    angles = raw.angles if order is None else raw.angles[order]
    turns = continuous_rotation(angles) / (2 * np.pi)
    log.info("%s: the projections turn continuously by %.2f turns in acquisition order", raw.source, turns)
    if turns > AUTO_DYNAMIC_TURNS:
        summary(log, f"{raw.source}: read as a dynamic scan (a continuous rotation of {turns:.1f} turns), one time "
                     f"step per {cfg.time.span_deg:g} deg (time.window: none for a static scan)")
        return "angle"
    return None


def splits_warning(k: int, min_projections: int, dynamic: bool = False) -> str | None:
    """The warning when ``k`` splits leave fewer than :data:`MIN_PROJECTIONS_PER_SPLIT`
    projections each (None when they leave enough, or when ``k`` is more than the
    projections, which the ingest refuses).

    Parameters
    ----------
    k : int
        ``splits.k``.
    min_projections : int
        Projections of the scan, or of its shortest time step (``dynamic``).
    """
    per_split = min_projections // k
    if k > min_projections or per_split >= MIN_PROJECTIONS_PER_SPLIT:
        return None
    where = " in the shortest time step" if dynamic else ""
    remedy = "use fewer splits or longer time steps" if dynamic else "use fewer splits"
    return (f"splits.k = {k} leaves {per_split} projection{'s' if per_split > 1 else ''} per split{where} "
            f"(fewer than {MIN_PROJECTIONS_PER_SPLIT}): each split's FBP is mostly streaks; {remedy}")


def build_sinograms(raw: RawScan, cfg: RunConfig) -> Sinograms:
    """The store's sinograms for ``raw`` (static, dynamic or XRD-CT; see the module docstring)."""
    sg = _sinograms(raw, cfg)
    message = splits_warning(cfg.splits.k, sg.min_projections, sg.modality == "dynamic")
    if message is not None:
        from ..preprocess import add_warning

        add_warning(sg.info, message)
    return sg


def _sinograms(raw: RawScan, cfg: RunConfig) -> Sinograms:
    """The sinograms of ``raw`` for its modality, before the splits are checked against them."""
    mode = window_mode(raw, cfg) if raw.channels is None or cfg.time.window in ("angle", "time") else None
    if raw.channels is not None:
        if mode is not None:
            raise ValueError(f"{raw.source} is an XRD-CT scan ({raw.n_channels} channels): time windows "
                             "(time.window) apply to dynamic absorption scans only")
        return _xrdct(raw, cfg)
    if cfg.channels.select is not None:
        log.warning("channels.select is ignored: %s has one channel", raw.source)
    if mode is not None:
        return _dynamic(raw, cfg, mode)
    pre = _preprocess(raw, cfg)
    sino = np.asarray(pre.sinogram, dtype=np.float32)[None, None]
    return Sinograms(sino, pre.angles, float(pre.center), int(pre.n_clamped), dict(pre.info), "static")


def _acquisition_permutation(raw: RawScan) -> np.ndarray | None:
    """The permutation that puts ``raw``'s projections in acquisition order (by acquisition
    index, else time), or None when they already are (or the scan says nothing of it)."""
    if raw.acquisition_index is not None:
        order = np.argsort(raw.acquisition_index, kind="stable")
    elif raw.timestamps is not None:
        order = np.argsort(raw.timestamps, kind="stable")
    else:
        return None
    return None if np.array_equal(order, np.arange(order.size)) else order


def _acquisition_order(raw: RawScan) -> RawScan:
    """``raw`` with its projections in acquisition order (by acquisition index, else time)."""
    order = _acquisition_permutation(raw)
    if order is None:
        return raw
    log.info("%s: projections put in acquisition order", raw.source)
    return RawScan(raw.projections[order], raw.flats, raw.darks, raw.angles[order], source=raw.source,
                   preprocessed=raw.preprocessed, attrs=dict(raw.attrs),
                   timestamps=None if raw.timestamps is None else raw.timestamps[order],
                   acquisition_index=None if raw.acquisition_index is None else raw.acquisition_index[order])


def _dynamic(raw: RawScan, cfg: RunConfig, mode: str) -> Sinograms:
    raw = _acquisition_order(raw)
    t = cfg.time
    steps = time_windows(raw.angles, raw.timestamps, by=mode, span=np.deg2rad(t.span_deg), seconds=t.seconds,
                         offset=np.deg2rad(t.offset) if mode == "angle" else t.offset)
    n_all = len(steps)
    if t.steps is not None:
        lo, hi = t.steps
        if not 0 <= lo < hi <= n_all:
            raise ValueError(f"time.steps = [{lo}, {hi}) but {raw.source} has {n_all} time steps")
        steps = steps[lo:hi]
    pre = _preprocess(raw, cfg, sort_angles=False, center_projections=steps[0].projections, one_rotation=False)
    lines = np.asarray(pre.sinogram, dtype=np.float32)  # (z, stream, det), acquisition order
    counts = np.array([s.projections.size for s in steps])
    nt, na = len(steps), int(counts.max())
    nz, nd = lines.shape[0], lines.shape[2]
    sino = np.zeros((nt, 1, nz, na, nd), dtype=np.float32)
    angles = np.full((nt, na), np.nan)
    index = np.full((nt, na), -1, dtype=np.int64)
    for i, s in enumerate(steps):
        n = s.projections.size
        sino[i, 0, :, :n] = lines[:, s.projections]
        angles[i, :n] = raw.angles[s.projections]
        index[i, :n] = s.projections
    unit = "s" if raw.timestamps is not None else "step"
    wunit = "rad" if mode == "angle" else "s"
    info = dict(pre.info, time_steps=nt, time_steps_in_scan=n_all, window=mode,
                projections_per_step=[int(c) for c in counts], mean_projections_per_step=float(counts.mean()))
    log.info("%s: %d time steps of %s (%d to %d projections each)", raw.source, nt,
             f"{t.span_deg:g} deg" if mode == "angle" else f"{t.seconds:g} s", counts.min(), counts.max())
    return Sinograms(
        sino, angles, float(pre.center), int(pre.n_clamped), info, "dynamic",
        time=np.array([s.time for s in steps]), time_attrs={"units": unit, "long_name": "time step (mean time of "
                                                                                        "its projections)"},
        coords={"projection_index": (("time", "angle"), index, {"long_name": "projection in the stream (-1: padding)"}),
                "window_start": (("time",), np.array([s.start for s in steps]), {"units": wunit}),
                "window_stop": (("time",), np.array([s.stop for s in steps]), {"units": wunit})},
    )


def _xrdct(raw: RawScan, cfg: RunConfig) -> Sinograms:
    proj = raw.projections  # (channel, angle, z, det)
    channels = raw.channels
    if cfg.channels.select is not None:
        lo, hi = cfg.channels.select
        if not 0 <= lo < hi <= proj.shape[0]:
            raise ValueError(f"channels.select = [{lo}, {hi}) but {raw.source} has {proj.shape[0]} channels")
        proj, channels = proj[lo:hi], channels[lo:hi]
    if not raw.preprocessed:
        raise ScanError(raw.source, None, "XRD-CT sinograms of reduced diffraction intensities",
                        "raw multi-channel counts (flat/dark correction of diffraction data is not supported)")
    total = RawScan(proj.sum(axis=0), None, None, raw.angles, source=raw.source, preprocessed=True,
                    attrs=dict(raw.attrs))
    pre = _preprocess(total, cfg)  # the centre from the total scattering; the angle order for all channels
    order = np.asarray(pre.info.get("projection_order", np.arange(raw.n_angles)), dtype=np.int64)
    sino = np.ascontiguousarray(np.transpose(proj[:, order], (0, 2, 1, 3)), dtype=np.float32)[None]
    info = dict(pre.info, channels=int(sino.shape[1]))
    span = float(np.rad2deg(np.ptp(pre.angles)))
    if span > 270:
        info["full_turn"] = True
    name, unit = raw.attrs.get("channel_name", "channel"), raw.attrs.get("channel_unit", "")
    return Sinograms(sino, pre.angles, float(pre.center), 0, info, "xrdct", channel=np.asarray(channels),
                     channel_attrs={"long_name": str(name), "units": str(unit)})
