"""The Prefect flows of tomodenoise: the pipeline (:mod:`flows.pipeline`) and the new-scan
watcher (:mod:`flows.watcher`).

:data:`RUNNER` is how the ``tomodenoise`` command runs a scan on Prefect: the core finds it
through the ``tomodenoise.runners`` entry point named ``prefect`` (pyproject.toml), so the core
never imports this package or Prefect by name.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


class PrefectRunner:
    """The ``tomodenoise run`` / ``demo`` runner: one Prefect API per process, the pipeline flow."""

    @contextlib.contextmanager
    def api(self, before_start: Callable[[], None] = lambda: None) -> Iterator[str]:
        """A Prefect API for this process (PREFECT_API_URL, or an embedded server); yields the
        console's line that says which. ``before_start`` runs once Prefect is imported (its
        logging set up), before any server starts."""
        import flows.pipeline  # noqa: F401  (imports Prefect, which sets up its logging)
        from tasks.server import describe, prefect_api

        before_start()
        with prefect_api() as (url, kind):
            yield describe(url, kind)

    def run(self, cfg: Any, reference: str | None = None) -> dict[str, Any]:
        from flows.pipeline import pipeline_flow

        return pipeline_flow(config=cfg, reference=reference)


RUNNER = PrefectRunner()
