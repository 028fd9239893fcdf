"""Where the service may read scans from: paths in API calls are confined to configured roots.

The roots come from the environment of the process that runs the flow (the Prefect worker),
never from the request itself, so a caller cannot widen them::

    TOMODENOISE_INPUT_ROOTS=/data/raw:/beamline/scans   (os.pathsep-separated)

When the variable is unset or empty every path is allowed (a scientist's own machine).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_INPUT_ROOTS = "TOMODENOISE_INPUT_ROOTS"
ENV_OUTPUT_ROOTS = "TOMODENOISE_OUTPUT_ROOTS"


class PathNotAllowed(PermissionError):
    """A path outside the configured input roots."""


def input_roots(value: str | None = None) -> list[Path]:
    """The configured input roots, resolved (empty: no confinement)."""
    raw = os.environ.get(ENV_INPUT_ROOTS, "") if value is None else value
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def output_roots(value: str | None = None) -> list[Path]:
    """Where runs may write (``TOMODENOISE_OUTPUT_ROOTS``; empty: no confinement)."""
    raw = os.environ.get(ENV_OUTPUT_ROOTS, "") if value is None else value
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def confine(path: str | os.PathLike, roots: list[Path] | None = None, what: str = "input") -> Path:
    """``path`` resolved (symlinks and ``..`` followed), or :class:`PathNotAllowed`.

    ``roots`` defaults to :func:`input_roots`; an empty list allows everything.
    """
    roots = input_roots() if roots is None else [Path(r).expanduser().resolve() for r in roots]
    p = Path(path).expanduser().resolve()
    if roots and not any(p == r or p.is_relative_to(r) for r in roots):
        shown = os.pathsep.join(str(r) for r in roots)
        env = ENV_INPUT_ROOTS if what == "input" else ENV_OUTPUT_ROOTS if what == "output" else "roots"
        raise PathNotAllowed(f"{path} is outside the configured {what} roots ({env}={shown})")
    return p
