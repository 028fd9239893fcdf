"""What a pipeline run shows in the Prefect UI: the report, the output location, progress.

``publish_report`` publishes two artifacts for the current flow run from what
:func:`tomodenoise.pipeline.report` wrote under ``<store>/report/``:

- ``report-<scan-id>`` (Markdown): the report page of :func:`tomodenoise.report.report_markdown`,
  the same figures as report.md and the console (quality verdict first, PSNR/SSIM with a
  reference, per time step and per channel, the noise estimate, the quality check, the seconds
  of each stage) and the pictures. Prefect's UI renders Markdown images through its own renderer
  (``PMarkdownRenderer``: an ``<img src=...>`` straight from the token, no URL allow-list), so
  the pictures are embedded as downscaled ``data:image/png;base64`` URIs; the artifact stays under
  ``MAX_EMBED_BYTES`` and pictures beyond that budget are listed by path instead.
- ``store-<scan-id>`` (link): ``data`` is the absolute output folder ``<output.root>/<scan_id>``,
  a plain path string that API clients read to find the outputs.

``publish_centre_preview`` publishes ``centre-<scan-id>``: the centre of rotation to check before
the long work (:func:`tomodenoise.report.centre_preview_markdown`). The keys are
:func:`tomodenoise.api.artifact_key`'s (a data-management system reads them).
``ChunkProgress`` is a progress artifact advanced by the flow as chunks complete. Call it
from the flow (the process that has the flow run context), never from a Dask worker.

Artifacts are for people: a failure to publish one is logged and never fails the run.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from tomodenoise.api import artifact_key
from tomodenoise.report import MAX_EMBED_BYTES, centre_preview_markdown, report_markdown

__all__ = ["ChunkProgress", "publish_centre_preview", "publish_report", "run_logger", "tag_quality"]


def run_logger(fallback: str = "tomodenoise.artifacts") -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run, the ``fallback`` logger elsewhere."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow or task run
        return logging.getLogger(fallback)


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


def publish_report(store_root: str) -> None:
    """Publish the report (Markdown) and output location (link) artifacts of a scan store."""
    root = Path(store_root).resolve()
    log = run_logger()
    try:
        create_markdown_artifact(markdown=report_markdown(root, embed_bytes=MAX_EMBED_BYTES),
                                 key=artifact_key("report", root.name), description=f"tomodenoise report: {root.name}")
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
