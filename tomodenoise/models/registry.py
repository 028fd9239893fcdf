"""Networks by name.

Adding a network is one new file in ``tomodenoise/models/`` with an ``nn.Module`` whose
keyword arguments are its parameters, plus one line in :data:`MODELS` below. Every
network maps ``(batch, 1, y, x) -> (batch, 1, y, x)`` for any ``y, x``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from torch import nn

__all__ = ["MODELS", "available_models", "build_model", "get_model_class", "model_defaults"]

#: name -> "module:Class" (imported lazily)
MODELS: dict[str, str] = {
    "msd": "tomodenoise.models.msd:MSDNet",
    "unet": "tomodenoise.models.unet:UNet",
    "dncnn": "tomodenoise.models.dncnn:DnCNN",
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(MODELS)


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(available_models())}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def model_defaults(name: str) -> dict[str, Any]:
    """The parameters of model ``name`` and their default values."""
    sig = inspect.signature(get_model_class(name).__init__)
    return {
        p.name: p.default
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def build_model(name: str, **params: Any) -> nn.Module:
    """Build the network registered under ``name`` with keyword ``params``.

    Parameters
    ----------
    name : str
        One of :func:`available_models` (``"msd"``, ``"unet"``, ``"dncnn"``).
    **params
        Keyword arguments of that network; omitted ones take their defaults.

    Returns
    -------
    torch.nn.Module
        The network, mapping ``(batch, 1, y, x)`` to ``(batch, 1, y, x)``.

    Raises
    ------
    ValueError
        For an unknown name (lists the valid names), an unknown parameter (lists the valid
        parameters with their defaults) or a bad parameter value.
    """
    defaults = model_defaults(name)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        raise ValueError(f"model {name!r}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}")
    try:
        return get_model_class(name)(**params)
    except (TypeError, ValueError) as exc:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        raise ValueError(f"model {name!r}: bad parameters {params!r}: {exc}; valid parameters: {valid}") from exc
