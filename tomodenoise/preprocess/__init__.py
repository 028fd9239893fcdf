"""Preprocessing: flat/dark correction, -log, centre of rotation, outliers and rings.

:func:`preprocess` turns a :class:`~tomodenoise.io.RawScan` into sinograms
``(z, angle, det)`` of line integrals plus the centre of rotation (a 0-based detector
column; the middle of a detector of width ``W`` is ``(W - 1) / 2``).

Bad input is refused with a :class:`~tomodenoise.io.ScanError` naming the remedy: a
detector narrower than :data:`~tomodenoise.io.checks.MIN_DET_WIDTH`, angles that are all
the same, flats not brighter than the darks, and more than ``max_clamped_fraction`` (1 %
by default) of the transmission values at or below zero. Projections whose angles are not
monotonic are sorted by angle, with a warning (``info["warnings"]``) and their
acquisition order in ``info["projection_order"]``. The angles of one rotation are warned
about, not refused, when projections share an angle or when they span neither about 180
nor about 360 degrees (:func:`~tomodenoise.io.checks.duplicated_angles_warning`,
:func:`~tomodenoise.io.checks.angle_span_warning`); :func:`add_warning` logs and records
such a warning.

Centre of rotation (:func:`find_center`)
----------------------------------------
Two steps, both written for this package from the literature:

1. **Coarse, from data consistency** (Vo, Atwood and Drakopoulos, "Reliable method for
   calculating the center of rotation in parallel-beam tomography", Opt. Express 22,
   19078, 2014). For a scan covering half a turn, the projection at ``theta + pi`` is the
   projection at ``theta`` mirrored about the rotation axis ``c``. Appending the sinogram,
   mirrored about a candidate ``c``, to itself gives a full-turn sinogram. For the right
   ``c`` it is the sinogram of an object of radius ``R <= W / 2``, whose 2-D Fourier
   transform is (nearly) zero in the double wedge ``|k| > |omega| R`` (``k`` the angular
   harmonic, ``omega`` the detector frequency in rad/pixel); a wrong ``c`` puts a seam in
   it that spreads energy into that wedge. The candidate with the least mean Fourier
   magnitude in the wedge wins: first on a binned detector over the whole search range,
   then around the best candidate on ever finer detectors, down to half-pixel steps at
   full resolution. Scans with unevenly spaced angles are resampled to even ones first.
2. **Fine, from image quality** (Donath et al., "Automated determination of the center of
   rotation in tomography data", JOSA A 23, 1048, 2006): the histogram entropy of an FBP
   reconstruction is smallest at the right centre (sharp edges, no double contours). The
   sinogram is shifted by a band-limited (Fourier) sub-pixel shift so that the candidate
   centre sits in the middle, reconstructed with ASTRA's CPU FBP on a central region of
   interest (Hann filter and a slight Gaussian smoothing, so that noise does not dominate
   the histogram: blur from a wrong centre averages noise away and would lower it), and the entropy minimum is located in half-pixel steps and refined to
   sub-pixel precision by a parabola through the minimum and its neighbours. Only the
   first half turn of a longer scan is used: over a full turn a wrong centre blurs rather
   than doubles edges, and blur can lower the entropy.

``method="vo"`` stops after step 1 (with a parabolic sub-pixel estimate), ``"fbp"`` uses
only image metrics (coarse: the negative fraction of binned-detector reconstructions over
the whole range, which unlike the entropy stays reliable far from the minimum; then step
2), ``"auto"`` (the default) runs step 1 then step 2, and falls back to the ``"fbp"``
coarse search for scans that do not cover half a turn.

Limitations: scans covering less than half a turn give an unreliable centre (a warning is
logged and recorded in ``info["center_warning"]``); give the centre explicitly then. A
centre found at the edge of the search range is flagged the same way.
"""

from __future__ import annotations

from .center import (
    COARSE_WIDTH,
    ENTROPY_MAX_ANGLES,
    ENTROPY_ROI,
    VO_MAX_ANGLES,
    CenterMethod,
    center_search_range,
    find_center,
)
from .core import CENTER_ROWS, Preprocessed, add_warning, preprocess
from .filters import remove_outliers, remove_rings
from .flatfield import flat_dark_correct, minus_log

__all__ = [
    "Preprocessed",
    "add_warning",
    "center_search_range",
    "find_center",
    "flat_dark_correct",
    "minus_log",
    "preprocess",
    "remove_outliers",
    "remove_rings",
]
