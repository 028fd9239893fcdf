"""The pipeline flow's parameters, checked before a flow run is created (:mod:`tomodenoise.api`):
a request the flow cannot take is refused with one sentence and a status (409, 422), and
nothing reaches the server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .config import RunConfig
from .config_errors import ConfigError, validated

__all__ = ["FLOW_PARAMETERS", "BadRequest", "check_parameters"]


class BadRequest(ValueError):
    """A request the pipeline flow cannot take, refused before anything is sent: ``status_code``
    409 for a parameter the flow does not have, 422 for a value it does not accept, and
    ``parameter``, the parameter's name."""

    def __init__(self, message: str, status_code: int, parameter: str):
        super().__init__(message)
        self.status_code = status_code
        self.parameter = parameter


#: The pipeline flow's parameters (``flows/pipeline.py``, ``pipeline_flow``) and what each takes.
#: Kept here because the core never imports the flows; tests/flow/test_api_flow.py checks they match.
FLOW_PARAMETERS: dict[str, str] = {
    "scan": "the scan's path (text)",
    "overrides": 'a mapping of configuration sections, e.g. {"train": {"epochs": 5}}',
    "config": "a whole configuration (a mapping like the YAML file) or null",
    "reference": "the path (text) of a clean .npy volume, or null",
}
_PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "scan": (str,), "overrides": (dict,), "config": (dict, type(None)), "reference": (str, type(None)),
}


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` as the pipeline flow takes them, or :class:`BadRequest` (nothing is sent).

    Names must be the flow's (:data:`FLOW_PARAMETERS`, else 409), ``scan`` is required, values of
    the right type, ``config`` a valid :class:`~tomodenoise.config.RunConfig` and ``overrides``
    valid on top of it (on the default configuration when the deployment's ``config`` is used).
    """
    for name, value in parameters.items():
        if name not in FLOW_PARAMETERS:
            raise BadRequest(f"parameter {name!r} (given {_short(value)}) is not a parameter of the pipeline flow; "
                             f"its parameters: {', '.join(FLOW_PARAMETERS)}", 409, name)
    if "scan" not in parameters:
        raise BadRequest(f"parameter 'scan' is missing; it takes {FLOW_PARAMETERS['scan']}", 422, "scan")
    for name, value in parameters.items():
        if not isinstance(value, _PARAMETER_TYPES[name]):
            raise BadRequest(f"parameter {name!r} = {_short(value)} ({type(value).__name__}) is not accepted; "
                             f"it takes {FLOW_PARAMETERS[name]}", 422, name)
    name = "config"
    try:
        base = RunConfig() if parameters.get("config") is None else \
            validated(RunConfig, parameters["config"], lambda parts: "the config")
        name = "overrides"
        base.with_overrides(_checkable(parameters.get("overrides"), parameters.get("config") is None))
    except ConfigError as exc:  # one sentence: where, the key, the value, what is accepted
        said = str(exc).removeprefix("the overrides: ").removeprefix("the config: ")
        raise BadRequest(f"parameter {name!r}: {said}", 422, name) from None
    return dict(parameters)


def _checkable(overrides: dict[str, Any] | None, default_config: bool) -> dict[str, Any] | None:
    """The overrides a client can check: on the default configuration (the deployment's own is
    not known here) a network's parameters belong to the deployment's network, so they are left
    to the worker unless the overrides name the network too."""
    if not (default_config and overrides and isinstance(overrides.get("model"), dict)):
        return overrides
    model = overrides["model"]
    if "params" in model and "name" not in model:
        return {**overrides, "model": {k: v for k, v in model.items() if k != "params"}}
    return overrides
