"""What a pipeline run shows in the Prefect UI: the report, the output location, progress.

``publish_report`` reads what :func:`tomodenoise.pipeline.report` wrote under
``<store>/report/`` and publishes two artifacts for the current flow run:

- ``report-<scan-id>`` (Markdown): the metrics table (PSNR/SSIM of FBP and denoised when a
  reference was given, the noise estimate, the seconds of each stage) and the preview PNGs.
  Prefect's UI renders Markdown images through its own renderer (``PMarkdownRenderer``:
  an ``<img src=...>`` straight from the token, no URL allow-list), so the previews are
  embedded as downscaled ``data:image/png;base64`` URIs; the artifact stays under
  ``MAX_EMBED_BYTES`` and previews beyond that budget are listed by path instead.
- ``store-<scan-id>`` (link): ``data`` is the absolute output folder ``<output.root>/<scan_id>``,
  a plain path string that API clients read to find the outputs.

``ChunkProgress`` is a progress artifact advanced by the flow as chunks complete. Call it
from the flow (the process that has the flow run context), never from a Dask worker.

Artifacts are for people: a failure to publish one is logged and never fails the run.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

PREVIEW_WIDTH = 400  # pixels; previews are downscaled to this width before embedding
MAX_EMBED_BYTES = 900_000  # total base64 of embedded previews (keeps the artifact < ~1 MB)


def run_logger(fallback: str = "tomodenoise.artifacts") -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run, the ``fallback`` logger elsewhere."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow or task run
        return logging.getLogger(fallback)


def artifact_key(prefix: str, name: str) -> str:
    """``<prefix>-<name>`` with the name in lowercase ASCII letters, digits and dashes."""
    key = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return f"{prefix}-{key or 'scan'}"


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "n/a"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _png_data_uri(path: Path, width: int = PREVIEW_WIDTH) -> str:
    """The PNG at ``path`` downscaled to ``width`` pixels (never up), as a data URI."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.width > width:
            img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


CENTRE_PREVIEW_WIDTH = 1100  # pixels: the centre preview is a wide grid; narrower hides its differences


def centre_preview_markdown(png: str | Path) -> str:
    """The centre-of-rotation artifact's Markdown: the numbers, the remedy and the embedded
    ``report/preview_centre.png`` (:func:`tomodenoise.preview.store_preview`)."""
    path = Path(png).resolve()
    sidecar = path.with_suffix(".json")
    info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    uri = _png_data_uri(path, CENTRE_PREVIEW_WIDTH)
    if len(uri) > MAX_EMBED_BYTES:
        uri = _png_data_uri(path, 2 * PREVIEW_WIDTH)
    centre = _fmt(info.get("center"))
    lines = [f"# Centre of rotation: {path.parent.parent.name}", "",
             f"Centre **{centre}** ({info.get('center_method', 'n/a')}); the score curve's minimum "
             f"{_fmt(info.get('curve_minimum'))}. The red panel should be the sharpest, and the curve's "
             "minimum at the red line.", "",
             "Wrong centre? Rerun with `--set preprocess.center=<value>` (e.g. the sharpest panel's centre): "
             "before the long work, not after it.", "",
             f"![centre preview]({uri})", "", f"`{path}`", ""]
    return "\n".join(lines)


def publish_centre_preview(png: str | Path | None) -> None:
    """Publish the centre preview PNG as the run's first Markdown artifact ``centre-<scan-id>``
    (the image embedded); nothing when ``png`` is None (not written). Never fails the run."""
    if png is None or not Path(png).exists():
        return
    name = Path(png).resolve().parent.parent.name
    try:
        create_markdown_artifact(markdown=centre_preview_markdown(png), key=artifact_key("centre", name),
                                 description=f"centre of rotation of {name}: check it before the long work")
    except Exception as exc:
        run_logger().warning("could not publish the centre preview artifact: %s", exc)


def report_markdown(store_root: str | Path, max_embed_bytes: int = MAX_EMBED_BYTES) -> str:
    """The report artifact's Markdown, built from ``<store>/report/`` (metrics.json, previews)."""
    root = Path(store_root).resolve()
    report_dir = root / "report"
    m = json.loads((report_dir / "metrics.json").read_text())
    fbp, den = m.get("fbp", {}), m.get("denoised", {})
    lines = [f"# tomodenoise report: {root.name}", "", "| metric | FBP | denoised |", "|---|---|---|"]
    for key in ("psnr", "ssim"):
        if key in fbp or key in den:
            spec = ".2f" if key == "psnr" else ".3f"
            lines.append(f"| {key.upper()} | {_fmt(fbp.get(key), spec)} | {_fmt(den.get(key), spec)} |")
    if "noise_std_estimate" in fbp:
        lines.append(f"| noise std (estimated from the splits) | {_fmt(fbp['noise_std_estimate'], '.4g')} | |")
    if den.get("best_val_loss") is not None:
        lines.append(f"| best N2I validation loss | | {_fmt(den['best_val_loss'], '.4g')} |")
    if "psnr" not in fbp:
        lines += ["", "No reference given: PSNR/SSIM not computed."]
    from tomodenoise.quality.report import quality_markdown

    q = m.get("quality") or {}
    if q:  # the verdict first in the UI: a result below baseline is held back by its readers
        lines[1:1] = ["", f"**quality: {q.get('status', 'ok')}**"]
        lines += [""] + quality_markdown(q)
    stages = {k: v for k, v in (m.get("stages") or {}).items()}
    if stages:
        lines += ["", "| stage | seconds |", "|---|---|"]
        lines += [f"| {name} | {_fmt(sec, '.1f')} |" for name, sec in stages.items()]
        total = sum(float(s) for s in stages.values() if isinstance(s, (int, float)))
        lines.append(f"| **total** | **{total:.1f}** |")
    pngs = sorted(report_dir.glob("preview_z*.png"))
    if pngs:
        lines += ["", "## Previews", "", "FBP | denoised | difference (FBP - denoised)", ""]
        used = 0
        for png in pngs:
            uri = _png_data_uri(png)
            if used + len(uri) > max_embed_bytes:
                lines += [f"- `{png}` (not embedded: the report is at its size limit)", ""]
                continue
            used += len(uri)
            lines += [f"![{png.stem}]({uri})", ""]
    lines += ["", f"Output store: `{root}`", ""]
    return "\n".join(lines)


def publish_report(store_root: str) -> None:
    """Publish the report (Markdown) and output location (link) artifacts of a scan store."""
    root = Path(store_root).resolve()
    log = run_logger()
    try:
        create_markdown_artifact(markdown=report_markdown(root), key=artifact_key("report", root.name),
                                 description=f"tomodenoise report: {root.name}")
    except Exception as exc:  # pragma: no cover - the report files exist once pipeline.report ran
        log.warning("could not publish the report artifact: %s", exc)
    tag_quality(root)
    try:
        create_link_artifact(link=str(root), link_text="output store", key=artifact_key("store", root.name),
                             description=f"output folder of {root.name}")
    except Exception as exc:  # pragma: no cover
        log.warning("could not publish the output store artifact: %s", exc)


def tag_quality(root: Path) -> None:
    """Tag the flow run ``quality:below_baseline`` (or ``quality:ok``) from the store's report, so the UI's
    run list, automations and API clients can filter and hold back results below baseline."""
    log = run_logger()
    try:
        status = (json.loads((root / "report" / "metrics.json").read_text()).get("quality") or {}).get("status")
        if not status:
            return
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run

        run_id = flow_run.root_flow_run_id or flow_run.id
        if not run_id:
            return
        with get_client(sync_client=True) as client:
            tags = set(client.read_flow_run(run_id).tags or [])
            tags = {t for t in tags if not t.startswith("quality:")} | {f"quality:{status}"}
            client.update_flow_run(run_id, tags=sorted(tags))
    except Exception as exc:  # artifacts and tags are for people: never fail the run
        log.warning("could not tag the run with its quality: %s", exc)


class ChunkProgress:
    """A progress artifact (0-100 %) that the flow advances as chunks complete.

    Thread-safe; updates are sent only when the whole percentage changes (and at the end),
    so thousands of chunks do not mean thousands of API calls. Use it in the flow's process.
    """

    def __init__(self, total: int, description: str):
        self.total = max(0, int(total))
        self.done = 0
        self.description = description
        self._sent = -1
        self._lock = threading.Lock()
        self.artifact_id: UUID | None = None
        try:
            self.artifact_id = create_progress_artifact(progress=self._percent(), description=description)
            self._sent = int(self._percent())
        except Exception as exc:
            run_logger().warning("could not create the progress artifact %r: %s", description, exc)

    def _percent(self) -> float:
        return 100.0 if self.total == 0 else min(100.0, 100.0 * self.done / self.total)

    @property
    def percent(self) -> float:
        return self._percent()

    def advance(self, n: int = 1) -> float:
        """Count ``n`` more chunks done; returns the percentage."""
        with self._lock:
            self.done += n
            pct = self._percent()
            if self.artifact_id is None or int(pct) == self._sent:
                return pct
            try:
                update_progress_artifact(self.artifact_id, progress=pct)
                self._sent = int(pct)
            except Exception as exc:
                run_logger().warning("could not update the progress artifact %r: %s", self.description, exc)
            return pct
