"""Centre-of-rotation preview: the first picture of a run, before the long work.

A wrong centre of rotation shows only after denoising, when retraining is expensive. This
module reconstructs the central slice (FBP, :mod:`tomodenoise.recon`) at the centre found
(or given) and at +-0.5, +-1 and +-2 px, each after the quick Gaussian
(:mod:`tomodenoise.quality.gaussian`: sigma tuned on the N2I loss of K = 4 interlaced angle
splits of that slice, at the chosen centre), and plots the 7 panels with the centre finder's
score curve (the FBP histogram entropy of :mod:`tomodenoise.preprocess.center`, the metric
of its fine step, on the same rows, half turn and binning) in one PNG.

- :mod:`.compute`: :func:`centre_preview`, the computation, arrays in and out;
- :mod:`.figure`: :func:`write_preview_png`, the picture (its PNG text chunk
  ``tomodenoise`` holds the numbers as JSON);
- :mod:`.sources`: :func:`preview_scan`, from a scan on disk (``tomodenoise preview``),
  reading only the :data:`~tomodenoise.preprocess.CENTER_ROWS` central detector rows the
  run finds the centre on (so it finds the same centre); :func:`store_preview`, from an
  ingested store: ``<store>/report/preview_centre.png``, written by the run right after
  ingest.

Speed: the panels show the central ``MAX_PIXELS`` x ``MAX_PIXELS`` region at full detector
resolution (binning the detector would shrink a half-pixel error below what the eye sees;
the blur of a wrong centre is the same everywhere in a parallel-beam slice), from at most
``MAX_ANGLES`` evenly subsampled projections.
"""
from __future__ import annotations

from .compute import (
    CURVE_HALF_WIDTH,
    CURVE_STEP,
    MAX_ANGLES,
    MAX_PIXELS,
    OFFSETS,
    PREVIEW_NAME,
    REMEDY,
    SPLITS,
    CentrePreview,
    centre_preview,
    centre_scores,
)
from .figure import write_preview_png
from .sources import preview_scan, scan_rows, store_preview

__all__ = [
    "CURVE_HALF_WIDTH",
    "CURVE_STEP",
    "MAX_ANGLES",
    "MAX_PIXELS",
    "OFFSETS",
    "PREVIEW_NAME",
    "REMEDY",
    "SPLITS",
    "CentrePreview",
    "centre_preview",
    "centre_scores",
    "preview_scan",
    "scan_rows",
    "store_preview",
    "write_preview_png",
]
