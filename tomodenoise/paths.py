"""Where the service may read scans from: paths in API calls are confined to configured roots.

The roots come from the environment of the process that runs the flow (the Prefect worker),
never from the request itself, so a caller cannot widen them::

    TOMODENOISE_INPUT_ROOTS=/data/raw:/beamline/scans   (os.pathsep-separated)

When the variable is unset or empty every path is allowed (a scientist's own machine).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

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


# Settings a run may not change once the service confines paths: they name other machines or
# run shell commands (SLURM job prologues), so they belong to the deployment's configuration.
DEPLOYMENT_ONLY = (("compute", "slurm"), ("compute", "address"))


def confined_config(config: Any = None, scan: str | None = None, overrides: dict[str, Any] | None = None) -> Any:
    """The run's configuration from a caller's values, every path confined to its roots.

    With ``TOMODENOISE_INPUT_ROOTS`` / ``TOMODENOISE_OUTPUT_ROOTS`` set (the service), the scan
    (and the files read beside it: angles, flats, darks), ``train.resume``/``train.init_from``
    and ``output.root`` must lie inside them, and the overrides may not set ``compute.slurm``
    or ``compute.address``. Without roots every path is allowed.
    """
    from .config import RunConfig

    roots_in, roots_out = input_roots(), output_roots()
    if (roots_in or roots_out) and overrides:
        for section, key in DEPLOYMENT_ONLY:
            if key in (overrides.get(section) or {}):
                raise PathNotAllowed(f"{section}.{key} is set by the deployment, not per run")
    cfg = (config or RunConfig()).with_overrides(overrides)
    if scan:
        cfg.input.path = scan
    if not cfg.input.path:
        raise ValueError("no scan given: set the `scan` parameter (or config.input.path)")
    for key in ("path", "angles_file", "flats", "darks"):  # the scan and the files read beside it
        value = getattr(cfg.input, key)
        if value:
            setattr(cfg.input, key, str(_confine_files(value, roots_in)))
    if roots_out:
        cfg.output.root = str(confine(cfg.output.root, roots_out, what="output"))
    for key in ("resume", "init_from"):  # checkpoints read by the training
        if getattr(cfg.train, key) and (roots_in or roots_out):
            setattr(cfg.train, key, str(confine(getattr(cfg.train, key), roots_in + roots_out, what="input or output")))
    return cfg


def _confine_files(value: str, roots: list[Path]) -> Path:
    """``value`` confined, and each file a glob or folder names (a symlink in it may lead out)."""
    pattern = confine(value, roots)
    if roots:
        text = str(pattern)
        names = glob.glob(text) if any(ch in text for ch in "*?[") else [text]
        for name in names:
            confine(name, roots)
            if os.path.isdir(name):
                for entry in os.scandir(name):
                    confine(entry.path, roots)
    return pattern


def confined_reference(reference: str | None) -> str | None:
    """A reference volume's path confined to the input or output roots (None stays None)."""
    roots = input_roots() + output_roots()
    return str(confine(reference, roots, what="input or output")) if reference and roots else reference
