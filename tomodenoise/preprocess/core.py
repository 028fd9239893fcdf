"""The whole preprocessing step: a :class:`~tomodenoise.io.RawScan` -> sinograms.

:func:`preprocess` checks the scan, applies flat/dark correction and -log (or takes line
integrals as they are), the optional outlier and ring filters, sorts projections whose
angles are not monotonic and finds the centre of rotation, refusing bad input with a
:class:`~tomodenoise.io.ScanError`; its result is a :class:`Preprocessed`. Input that is
legal but almost surely wrong (duplicated angles, an unusual angular span) is warned about
with :func:`add_warning`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..io.base import BAD_FLAT_FRACTION, RawScan
from ..io.checks import (
    angle_order,
    angle_span_warning,
    check_angle_span,
    check_detector_width,
    duplicated_angles_warning,
)
from ..io.errors import ScanError
from .center import CenterMethod, find_center_info
from .filters import remove_outliers, remove_rings
from .flatfield import flat_dark_correct, minus_log

__all__ = ["CENTER_ROWS", "Preprocessed", "add_warning", "center_rows", "preprocess"]

log = logging.getLogger("tomodenoise.preprocess")

#: Most detector rows averaged into the sinogram used to find the centre.
CENTER_ROWS = 32


@dataclass
class Preprocessed:
    """Sinograms ready for reconstruction.

    Attributes
    ----------
    sinogram : numpy.ndarray
        ``(z, angle, det)`` float32 line integrals.
    angles : numpy.ndarray
        ``(angle,)`` float64 radians: in acquisition order when that is monotonic, else
        sorted (then ``info["projection_order"]`` holds the acquisition index of each
        projection).
    center : float
        Centre of rotation, 0-based detector column.
    n_clamped : int
        Number of transmission values clamped to ``log_min`` before the -log.
    info : dict
        JSON-serialisable record of what was done: counts, fractions, the centre method,
        and ``warnings``: a list of one-sentence warnings about the input (each also
        logged on the ``tomodenoise.preprocess`` logger).
    """

    sinogram: np.ndarray
    angles: np.ndarray
    center: float
    n_clamped: int
    info: dict[str, Any] = field(default_factory=dict)


def center_rows(n_z: int, rows: int = CENTER_ROWS) -> slice:
    """The central ``rows`` detector rows of ``n_z`` (all of them when there are no more)."""
    if n_z <= rows:
        return slice(0, n_z)
    start = (n_z - rows) // 2
    return slice(start, start + rows)


def _clamp_error(raw: RawScan, n_clamped: int, n_total: int, max_fraction: float, log_min: float) -> ScanError:
    """The error for too many transmission values at or below zero, naming the probable cause."""
    frac = n_clamped / float(max(n_total, 1))
    proj = raw.projections
    mean_p = float(proj[:: max(1, proj.shape[0] // 16)].mean(dtype=np.float64))
    if raw.flats is None:
        cause = (f"with no flat fields (the projections taken as transmission values, mean {mean_p:.4g}): "
                 "probably line integrals (-log) already, or raw counts with an offset")
        hint = ("read -log data as a sinogram, give the flat and dark fields with input.flats and input.darks, "
                f"or raise preprocess.max_clamped_fraction (now {max_fraction:g}) to accept the data "
                "with those values clamped")
    else:
        mean_f = float(raw.flats.mean(dtype=np.float64))
        mean_d = float(raw.darks.mean(dtype=np.float64)) if raw.darks is not None else 0.0
        if mean_p <= mean_d:
            why = "darks larger than the projections (a wrong dark assignment, or darks of another exposure)"
        else:
            why = "darks larger than the flats or the projections on part of the detector (a wrong dark/flat " \
                  "assignment)"
        cause = f"with mean flat {mean_f:.4g}, mean dark {mean_d:.4g} and mean projection {mean_p:.4g}: probably {why}"
        hint = ("check the flat and dark fields (input.flats, input.darks), or raise "
                f"preprocess.max_clamped_fraction (now {max_fraction:g}) to accept the data with those values clamped")
    return ScanError(raw.source, "projections",
                     f"at most {100 * max_fraction:.3g} % of the flat/dark-corrected transmission values at or "
                     f"below zero (under log_min {log_min:g}, clamped before the -log)",
                     f"{100 * frac:.3g} % ({n_clamped} of {n_total}) {cause}", hint=hint)


def add_warning(info: dict[str, Any], message: str) -> None:
    """Log ``message`` (a one-sentence warning about the input) and add it to ``info["warnings"]``."""
    log.warning("%s", message)
    info.setdefault("warnings", []).append(message)


def preprocess(
    raw: RawScan,
    center: float | None = None,
    log_min: float = 1e-6,
    center_search: float = 0.25,
    *,
    center_method: CenterMethod = "auto",
    outliers: float | None = None,
    rings: int | None = None,
    max_clamped_fraction: float = 0.01,
    sort_angles: bool = True,
    center_projections: np.ndarray | None = None,
    one_rotation: bool = True,
) -> Preprocessed:
    """Flat/dark correction, -log and centre of rotation: a RawScan -> sinograms.

    Parameters
    ----------
    raw : RawScan
        From :func:`tomodenoise.io.read_scan`. When ``raw.preprocessed`` is True its
        projections are line integrals already: flat/dark correction and -log are skipped.
    center : float, optional
        Centre of rotation (0-based column); found with :func:`find_center` when None, on
        the mean sinogram of (up to :data:`CENTER_ROWS`) central rows.
    log_min : float
        Transmission values below this are clamped before the -log.
    center_search : float
        Search the centre within ``middle +- center_search * det``.
    center_method : {"auto", "vo", "fbp"}
        See :func:`find_center`.
    outliers : float, optional
        Replace outliers (zingers) differing from their 3x3 median by more than this
        relative amount (in the raw projections; in the sinogram for preprocessed input).
        Off by default.
    rings : int, optional
        Ring removal (:func:`remove_rings`) with this median width. Off by default.
    max_clamped_fraction : float
        Refuse the scan when more than this fraction of the transmission values is at or
        below zero (clamped to ``log_min``); the config's ``preprocess.max_clamped_fraction``.
    sort_angles : bool
        Sort the projections by angle when the angles are not monotonic (pencil-beam and
        continuous-rotation scans), with a warning; the acquisition index of each sorted
        projection goes to ``info["projection_order"]``.
    center_projections : numpy.ndarray, optional
        Find the centre on these projections only (indices after sorting), e.g. one time step
        of a dynamic scan: one rotation, not the whole stream.
    one_rotation : bool
        The angles are those of one rotation (a static or XRD-CT scan): warn when projections
        share an angle (:func:`~tomodenoise.io.checks.duplicated_angles_warning`) and when the
        angles span neither about 180 nor about 360 degrees
        (:func:`~tomodenoise.io.checks.angle_span_warning`). False for the projection stream
        of a dynamic scan (several turns).

    Returns
    -------
    Preprocessed
        ``info["warnings"]`` lists the warnings about the input (also logged).

    Raises
    ------
    ScanError
        Raw counts without flat fields (cannot be normalised); a detector narrower than
        :data:`~tomodenoise.io.checks.MIN_DET_WIDTH`; angles that are all the same; more
        than ``max_clamped_fraction`` of the values clamped before the -log.
    ValueError
        For a non-finite ``center`` or a ``max_clamped_fraction`` outside [0, 1].
    """
    if not 0 <= max_clamped_fraction <= 1:
        raise ValueError(f"max_clamped_fraction must be within [0, 1], got {max_clamped_fraction}")
    check_detector_width(raw.n_det, raw.source, "projections", raw.projections.shape)
    check_angle_span(raw.angles, raw.source, "angles")
    info: dict[str, Any] = {"preprocessed_input": bool(raw.preprocessed), "log_min": float(log_min), "warnings": []}
    if one_rotation:
        _check_rotation(raw, info)
    lines, n_clamped = _line_integrals(raw, log_min, outliers, info)
    _check_clamped(raw, n_clamped, max_clamped_fraction, log_min, info)
    sino, angles = _sinogram(raw, lines, sort_angles, info)
    del lines
    if rings is not None:
        sino = remove_rings(sino, int(rings))
        info["rings"] = f"column-profile median {int(rings)}"
    if center is None:
        c = _found_center(raw, sino, angles, center_search, center_method, center_projections, info)
    else:
        c = _given_center(raw, center, sino.shape[2], info)
    info["center"] = float(c)
    info["shape"] = [int(v) for v in sino.shape]
    return Preprocessed(sinogram=sino, angles=angles, center=float(c), n_clamped=int(n_clamped), info=info)


def _check_rotation(raw: RawScan, info: dict[str, Any]) -> None:
    """Warn about angles of one rotation that are legal but almost surely wrong (see :func:`preprocess`)."""
    for message in (duplicated_angles_warning(raw.angles), angle_span_warning(raw.angles)):
        if message is not None:
            add_warning(info, f"{raw.source}: {message}")


def _line_integrals(raw: RawScan, log_min: float, outliers: float | None,
                    info: dict[str, Any]) -> tuple[np.ndarray, int]:
    """``(angle, z, det)`` line integrals of the scan and the number of values clamped before the -log.

    Line integrals are taken as they are (outliers filtered in them); raw counts and
    transmission values are checked against their fields (:func:`_check_fields`), filtered,
    flat/dark corrected and -log transformed.
    """
    proj = raw.projections
    if raw.preprocessed:
        if outliers is not None:
            proj, n_out = remove_outliers(proj, outliers)
            info["n_outliers"] = n_out
        info["flat_dark"] = "none (input already line integrals)"
        return np.asarray(proj, dtype=np.float32), 0
    _check_fields(raw, info)
    if outliers is not None:
        proj, n_out = remove_outliers(proj, outliers)
        info["n_outliers"] = n_out
    return minus_log(flat_dark_correct(proj, raw.flats, raw.darks), log_min)


def _check_fields(raw: RawScan, info: dict[str, Any]) -> None:
    """Refuse flat and dark fields that cannot normalise the projections; record them in ``info``.

    Without flats the projections must already be transmission values (around 0..1) and
    there must be no darks; with flats, they must be brighter than the darks over most of
    the detector (the readers refuse the others; this catches RawScans built by hand).
    """
    proj = raw.projections
    if raw.flats is None:
        if raw.darks is not None:
            raise ScanError(raw.source, "flats", "flat fields to go with the dark fields", "darks only",
                            hint="give the flat fields with input.flats")
        med = float(np.median(proj[:: max(1, proj.shape[0] // 16)]))
        if med > 2.0:
            raise ScanError(raw.source, "flats", "flat fields to normalise raw counts (or projections that are "
                            "transmission values around 0..1)", f"no flats and a median value of {med:.4g}",
                            hint="give the flat and dark fields with input.flats and input.darks (a file, "
                                 "folder or glob) when they are kept apart from the projections")
        info["flat_dark"] = "none (input already transmission)"
    else:
        info["flat_dark"] = "mean flat and dark" if raw.darks is not None else "mean flat, no darks"
        flat = raw.flats.mean(axis=0)
        dark = raw.darks.mean(axis=0) if raw.darks is not None else np.zeros_like(flat)
        n_bad = int(np.count_nonzero(~(flat > dark)))
        info["n_bad_flat_pixels"] = n_bad
        info["bad_flat_fraction"] = n_bad / float(flat.size)
        if info["bad_flat_fraction"] > BAD_FLAT_FRACTION:
            raise ScanError(raw.source, "flats", f"flat fields brighter than the darks over at least "
                            f"{100 * (1 - BAD_FLAT_FRACTION):.0f} % of the detector",
                            f"flat <= dark on {100 * info['bad_flat_fraction']:.1f} % of the pixels (mean flat "
                            f"{float(flat.mean()):.4g}, mean dark {float(dark.mean()):.4g})",
                            hint="check that flats and darks are not swapped (input.flats, input.darks)")
    info["n_flats"] = 0 if raw.flats is None else int(raw.flats.shape[0])
    info["n_darks"] = 0 if raw.darks is None else int(raw.darks.shape[0])


def _check_clamped(raw: RawScan, n_clamped: int, max_fraction: float, log_min: float,
                   info: dict[str, Any]) -> None:
    """Record the values clamped before the -log; refuse more than ``max_fraction`` of them."""
    n_total = int(raw.projections.size)
    info["n_clamped"] = int(n_clamped)
    info["clamped_fraction"] = n_clamped / float(max(n_total, 1))
    info["max_clamped_fraction"] = float(max_fraction)
    if info["clamped_fraction"] > max_fraction:
        raise _clamp_error(raw, int(n_clamped), n_total, max_fraction, log_min)


def _sinogram(raw: RawScan, lines: np.ndarray, sort_angles: bool,
              info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(z, angle, det)`` float32 sinograms of the ``(angle, z, det)`` line integrals, and their angles.

    With ``sort_angles`` the projections of angles that are not monotonic are sorted, with a
    warning, and their acquisition order goes to ``info["projection_order"]``.
    """
    angles = np.asarray(raw.angles, dtype=np.float64)
    order = angle_order(angles) if sort_angles else None
    if order is None:
        return np.ascontiguousarray(np.transpose(lines, (1, 0, 2)), dtype=np.float32), angles
    first = int(np.flatnonzero(np.diff(angles) < 0)[0]) + 1  # the first one below its predecessor
    sino = np.take(np.transpose(lines, (1, 0, 2)), order, axis=1).astype(np.float32, copy=False)
    info["angles_sorted"] = True
    info["projection_order"] = [int(i) for i in order]
    add_warning(info, f"{raw.source}: the {order.size} projection angles are not in order (projection {first} at "
                f"{np.rad2deg(raw.angles[first]):.4g} deg follows {np.rad2deg(raw.angles[first - 1]):.4g} deg): "
                "the projections are sorted by angle, and their acquisition order is kept in "
                "info['projection_order'] (the store's preprocess attributes)")
    return sino, angles[order]


def _found_center(raw: RawScan, sino: np.ndarray, angles: np.ndarray, search: float, method: CenterMethod,
                  projections: np.ndarray | None, info: dict[str, Any]) -> float:
    """The centre of rotation found on the mean sinogram of the central rows (:func:`center_rows`),
    on ``projections`` only when given; the search's record goes to ``info``."""
    rows = center_rows(sino.shape[0])
    sel = slice(None) if projections is None else np.asarray(projections)
    c, cinfo = find_center_info(sino[rows][:, sel].mean(axis=0), angles[sel], search, method)
    info.update(cinfo)
    info["center_rows"] = [int(rows.start), int(rows.stop)]
    if "center_warning" in cinfo:
        info["warnings"].append(f"{raw.source}: centre of rotation {c:.2f}: {cinfo['center_warning']}")
    return c


def _given_center(raw: RawScan, center: float, n_det: int, info: dict[str, Any]) -> float:
    """The centre of rotation given, checked: finite and on the detector (half a pixel beyond its
    edge columns at most, as the reconstruction accepts), else ``ValueError``."""
    c = float(center)
    if not np.isfinite(c):
        raise ValueError(f"center must be finite, got {center}")
    if not -0.5 <= c <= n_det - 0.5:
        raise ValueError(f"{raw.source}: preprocess.center = {c:g} lies outside the detector (columns 0..{n_det - 1}): "
                         "give a 0-based detector column, or leave it empty to find it")
    info["center_method"] = "given"
    return c
