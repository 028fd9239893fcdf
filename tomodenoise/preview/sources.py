"""The centre preview of a scan on disk (``tomodenoise preview``) or of an ingested store (the run)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..logs import summary
from .compute import PREVIEW_NAME, REMEDY, CentrePreview, centre_preview
from .figure import write_preview_png

__all__ = ["preview_scan", "scan_rows", "store_preview"]

log = logging.getLogger("tomodenoise.preview")

_VERSION = 1  # of the picture: a stored preview of another version is redrawn
_ALL_ROWS = 2 ** 62  # slices=(0, _ALL_ROWS): every reader refuses it, naming its row count


def _entry(cfg: Any) -> dict[str, Any]:
    """``entry=input.entry`` for the readers, when set (the NeXus entry of a file with several)."""
    entry = getattr(cfg.input, "entry", None)
    return {"entry": entry} if entry else {}


def scan_rows(cfg: Any) -> tuple[int, int]:
    """The detector rows ``(start, stop)`` a run of ``cfg`` reads: ``input.slices``, else all.

    The row count is learnt without reading the data: every reader checks ``slices`` against
    the detector's rows (:func:`tomodenoise.io.base.check_slices`) before reading, and names
    the count when it refuses an impossible range.
    """
    from ..io import ScanError, read_scan

    if cfg.input.slices:
        return int(cfg.input.slices[0]), int(cfg.input.slices[1])
    try:
        read_scan(cfg.input.path, format=cfg.input.format, angles_file=cfg.input.angles_file,
                  angles_unit=cfg.input.angles_unit, slices=(0, _ALL_ROWS), **_entry(cfg))
    except ScanError as e:
        m = re.search(r"stop <= (\d+)", str(e.expected))
        if m is None:
            raise
        return 0, int(m.group(1))
    raise RuntimeError(f"{cfg.input.path}: the reader accepted {_ALL_ROWS} detector rows")  # pragma: no cover


def _slice_input(sino5: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time step 0, channels summed, its own angles: ``(z, angle, det)`` and ``(angle,)``.

    What the centre was found on (the first time step of a dynamic scan, the total
    scattering of an XRD-CT scan).
    """
    a = np.atleast_2d(np.asarray(angles, dtype=np.float64))[0]
    a = a[np.isfinite(a)]
    s = np.asarray(sino5[0], dtype=np.float32).sum(axis=0)[:, : a.size]
    return s, a


def _preview_of(sino3: np.ndarray, angles: np.ndarray, center: float, method: str, z0: int, cfg: Any) -> CentrePreview:
    mid = sino3.shape[0] // 2
    return centre_preview(sino3[mid], angles, center, curve_sinogram=sino3.mean(axis=0), method=method,
                          filter=cfg.recon.filter, use_gpu=cfg.recon.use_gpu, z=z0 + mid)


def _method(info: dict[str, Any]) -> str:
    m = str(info.get("center_method") or "found")
    return m if m == "given" else f"found: {m}"


def _report(pv: CentrePreview, png: Path) -> None:
    log.info("centre preview %s: %s", png, json.dumps(pv.to_json()))
    summary(log, f"centre of rotation {pv.center:.2f} ({pv.method}): check {png} before the long work "
                 f"({REMEDY})")
    doubt = centre_doubt(pv)
    if doubt:
        log.warning("%s", doubt)


def centre_doubt(pv: CentrePreview) -> str | None:
    """A warning when the score curve's minimum is not at the chosen centre (a found centre only).

    The finder minimises the same score; a minimum elsewhere (often at the curve's edge) means
    the finder settled on a local minimum or the score misleads on this scan (rings, an object
    larger than the field of view): the centre should be checked before hours of training.
    """
    if pv.method == "given" or pv.curve_scores.size < 3:
        return None
    best = float(pv.curve_centres[int(np.argmin(pv.curve_scores))])
    if abs(best - pv.center) <= 0.5:
        return None
    edge = best in (float(pv.curve_centres.min()), float(pv.curve_centres.max()))
    return (f"the centre finder chose {pv.center:.2f} but its own score is lower at {best:.2f}"
            f"{' (the edge of the curve: the best centre may lie further out)' if edge else ''}; look at the centre "
            f"preview, and if another centre is sharper, rerun with --set preprocess.center=<value>")


def preview_scan(cfg: Any, out: str | Path | None = None) -> tuple[CentrePreview, Path]:
    """The preview of the scan ``cfg.input.path`` (``tomodenoise preview``), written to ``out``.

    Reads only the central :data:`~tomodenoise.preprocess.CENTER_ROWS` detector rows of the
    rows the run reads, preprocesses them as the run's ingest does (same centre), and
    writes the PNG (default ``<scan id>_preview_centre.png`` in the working folder).
    """
    from ..io import read_scan
    from ..pipeline.keys import scan_id_for
    from ..pipeline.modalities import build_sinograms
    from ..preprocess.core import center_rows

    if not cfg.input.path:
        raise ValueError("input.path is not set: give the scan to preview")
    start, stop = scan_rows(cfg)
    rows = center_rows(stop - start)
    rows = (start + rows.start, start + rows.stop)
    log.info("centre preview of %s: detector rows %d..%d of %d..%d", cfg.input.path, rows[0], rows[1], start, stop)
    raw = read_scan(cfg.input.path, format=cfg.input.format, angles_file=cfg.input.angles_file,
                    angles_unit=cfg.input.angles_unit, slices=rows, flats=cfg.input.flats, darks=cfg.input.darks,
                    **_entry(cfg))
    sg = build_sinograms(raw, cfg)
    sino3, angles = _slice_input(sg.sinogram, sg.angles)
    pv = _preview_of(sino3, angles, sg.center, _method(sg.info), rows[0], cfg)
    png = Path(out) if out else Path(f"{scan_id_for(cfg)}_{PREVIEW_NAME}")
    write_preview_png(pv, png, name=scan_id_for(cfg))
    _report(pv, png)
    return pv, png


def store_preview(store: Any, cfg: Any) -> Path | None:
    """``<store>/report/preview_centre.png`` of an ingested store; None when it failed.

    Run right after ingest. Kept when a preview of the same ingest (its stage key) is there
    already; a failure is logged and never fails the run (the preview is for people).
    """
    from ..preprocess.core import center_rows

    png = store.report_dir / PREVIEW_NAME
    sidecar = png.with_suffix(".json")
    try:
        key = [_VERSION, store.stage_info("ingest").get("key")]
        if png.exists() and sidecar.exists() and json.loads(sidecar.read_text()).get("key") == key:
            log.info("centre preview of this ingest already in %s", png)
            return png
        attrs = store.attrs
        arr = store.array("sinogram")
        rows = center_rows(arr.shape[2])
        sino3, angles = _slice_input(arr[0:1, :, rows], store.angles_of(0))
        z = np.asarray(store.array("z")[:])
        z0 = int(z[rows.start]) if z.size > rows.start else rows.start
        pv = _preview_of(sino3, angles, float(attrs["geometry"]["center"]), _method(attrs.get("preprocess", {})),
                         z0, cfg)
        write_preview_png(pv, png, name=store.root.name)
        sidecar.write_text(json.dumps({"key": key, **pv.to_json()}, indent=2))
        _report(pv, png)
        return png
    except Exception as e:  # noqa: BLE001 - a picture must not stop the run
        log.warning("centre preview not written (%s: %s)", type(e).__name__, e, exc_info=True)
        return None
