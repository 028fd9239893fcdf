"""Comparison methods by name.

Adding a method is one new module in ``tomodenoise/methods/`` with a :class:`MethodConfig`
subclass (``method: Literal["<name>"] = "<name>"`` and its parameters, a ``run`` method) plus
one line in :data:`METHODS`. The configs form a pydantic discriminated union on ``method``
(:func:`method_union`), so ``{"method": "tv", "weight": 0.1}`` in YAML or ``tv`` on the command
line both give the right class.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from .base import MethodConfig

__all__ = ["METHODS", "available_methods", "get_method_class", "method_union", "parse_method", "parse_methods"]

#: name -> "module:Class" (imported lazily)
METHODS: dict[str, str] = {
    "fbp": "tomodenoise.methods.classical:FBP",
    "sirt": "tomodenoise.methods.classical:SIRT",
    "tv": "tomodenoise.methods.tv:TVRecon",
    "gaussian": "tomodenoise.methods.classical:Gaussian",
    "bm3d": "tomodenoise.methods.classical:BM3D",
    "n2i": "tomodenoise.methods.n2i:Noise2Inverse",
    "noise2self": "tomodenoise.methods.noise2self:Noise2Self",
    "sdr": "tomodenoise.methods.noise2self:SplitDenoiseReconstruct",
    "supervised": "tomodenoise.methods.supervised:Supervised",
    "noise2noise": "tomodenoise.methods.supervised:Noise2Noise",
    "tomogan": "tomodenoise.methods.tomogan:TomoGAN",
    "sbd": "tomodenoise.methods.sbd:SimulationBased",
    "gaintuning": "tomodenoise.methods.gaintuning:GainTuning",
}


def available_methods() -> list[str]:
    """Names accepted by :func:`parse_method`, in the order of :data:`METHODS`."""
    return list(METHODS)


def get_method_class(name: str) -> type[MethodConfig]:
    """The config class registered under ``name`` (ValueError listing the valid names otherwise)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(available_methods())}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@lru_cache(maxsize=1)
def _adapter() -> TypeAdapter:
    return TypeAdapter(method_union())


def method_union() -> Any:
    """``Annotated[Union[<every registered config>], Field(discriminator="method")]``."""
    classes = tuple(get_method_class(n) for n in METHODS)
    return Annotated[Union[classes], Field(discriminator="method")]  # noqa: UP007 - a runtime tuple


def parse_method(spec: str | dict[str, Any] | MethodConfig) -> MethodConfig:
    """A method config from its name (defaults), a dict with ``method``, or a config."""
    if isinstance(spec, MethodConfig):
        return spec
    if isinstance(spec, str):
        spec = {"method": spec.strip()}
    if not isinstance(spec, dict) or "method" not in spec:
        raise ValueError(f"a method is a name or a mapping with a 'method' key, got {spec!r}")
    get_method_class(str(spec["method"]))  # the clear error for unknown names
    return _adapter().validate_python(spec)


def parse_methods(specs: str | list[Any]) -> list[MethodConfig]:
    """Method configs from ``"fbp,tv,n2i"`` or a list of names/mappings; labels must differ."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    out = [parse_method(s) for s in specs]
    if not out:
        raise ValueError("no methods given")
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"methods given twice: {', '.join(dup)} (give one a different 'name')")
    return out
