"""One sentence for a configuration that cannot be used.

:class:`ConfigError` says where the configuration came from (the YAML file, ``--set <item>``, the
overrides), the refused key's full dotted name, the value given and what is accepted;
:func:`validated` turns pydantic's errors into it and :func:`yaml_problem` PyYAML's. Their own
multi-line text goes to the log at DEBUG (the run log), never the console.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["MAX_LISTED", "ConfigError", "one_sentence", "validated", "yaml_problem"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration that cannot be used, in one sentence: where it came from (the YAML file,
    ``--set <item>`` or the overrides), the key's full dotted name, the value given and what is
    accepted. ``source`` is that origin; ``keys`` the dotted keys refused (empty for a syntax error)."""

    def __init__(self, message: str, source: str = "", keys: Sequence[str] = ()):
        super().__init__(message)
        self.source, self.keys = source, tuple(keys)


#: How many refused settings one message lists; the rest are counted.
MAX_LISTED = 3


def validated(model: type[M], data: dict[str, Any], origin: Callable[[list[str]], str]) -> M:
    """``model.model_validate(data)``; pydantic's errors become one :class:`ConfigError`, each
    refused key attributed by ``origin(key parts)`` (``"run.yaml"``, ``"--set train.lr=0"``, ...)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        refused = list(_refusals(model, exc))
        log.debug("refused configuration:\n%s", exc)
        entries = [(origin(parts), f"{'.'.join(parts)}{value}: {reason}") for parts, value, reason in refused]
        sources = list(dict.fromkeys(src for src, _ in entries))
        keys = [".".join(parts) for parts, _, _ in refused]
        if len(entries) == 1:
            raise ConfigError(f"{entries[0][0]}: {entries[0][1]}", sources[0], keys) from exc
        one_source = len(sources) == 1
        listed = [text if one_source else f"{src}: {text}" for src, text in entries[:MAX_LISTED]]
        more = f"; and {len(entries) - MAX_LISTED} more" if len(entries) > MAX_LISTED else ""
        head = f"{sources[0]}: " if one_source else ""
        raise ConfigError(f"{head}{len(entries)} settings are refused: "
                          + "; ".join(f"({i}) {t}" for i, t in enumerate(listed, 1)) + more,
                          ", ".join(sources), keys) from exc


def _refusals(model: type[BaseModel], exc: ValidationError) -> Iterator[tuple[list[str], str, str]]:
    """(key parts, " = value" or "", what is accepted) per refused key: pydantic's errors for one
    key (the members of a union such as ``int | 'auto'``) merged into one."""
    grouped: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for err in exc.errors():
        loc = err["loc"][:-1] if err["type"] == "missing" and isinstance(err["loc"][-1], int) else err["loc"]
        grouped.setdefault(tuple(_key_parts(model, loc)), []).append(err)
    for parts, errs in grouped.items():
        value = errs[0].get("input")
        accepted = [a for a in (_accepted(e) for e in errs) if a]
        reasons = [_reason(model, list(parts), e) for e in errs if not _accepted(e)]
        if accepted:
            reasons.insert(0, "must be " + " or ".join(dict.fromkeys(accepted)))
        section_rule = isinstance(value, dict) and errs[0]["type"] == "value_error"  # its message names the key
        yield list(parts), "" if section_rule else f" = {_shown(value)}", "; ".join(reasons)


def _key_parts(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The dotted key of a pydantic error location: model fields, list items as ``[i]``, union
    member tags (``int``, ``literal['auto']``) left out."""
    parts: list[str] = []
    model: Any = root
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] += f"[{item}]"
        elif model is not None and item in getattr(model, "model_fields", {}):
            parts.append(item)
            sub = model.model_fields[item].annotation
            model = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
        elif model is not None:  # an unknown key of a section
            parts.append(item)
            model = None
    return parts


#: pydantic error type -> what is accepted, as a noun phrase ("must be " + it).
_TYPES = {"int_parsing": "an integer", "int_type": "an integer", "int_from_float": "a whole number",
          "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
          "bool_type": "true or false", "string_type": "text", "list_type": "a list", "tuple_type": "a list",
          "dict_type": "a mapping", "model_type": "a mapping of keys", "model_attributes_type": "a mapping of keys"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
           "less_than": ("<", "lt")}


def _accepted(err: dict[str, Any]) -> str:
    """What the value must be, for a type, bound or choice error (``">= 2"``, ``"one of 'fbp', 'sirt'"``); empty else."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return f"{op} {ctx.get(name)}"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"one of {choices}" if "," in choices else choices
    return _TYPES.get(kind, "")


def _reason(root: type[BaseModel], parts: list[str], err: dict[str, Any]) -> str:
    """Why a value was refused, for the errors :func:`_accepted` does not phrase."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        section = parts[:-1]
        model: Any = root
        for p in section:
            model = model.model_fields[p].annotation
        known = list(model.model_fields)
        near = difflib.get_close_matches(parts[-1], known, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        if not section:
            return f"unknown section{hint}; known sections: {', '.join(known)}"
        return f"unknown key{hint}; known keys of {'.'.join(section)}: {', '.join(known)}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing" and err["loc"] and isinstance(err["loc"][-1], int):
        return "too few items"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    return err["msg"][0].lower() + err["msg"][1:]


def _shown(value: Any) -> str:
    """A value as the user wrote it, shortened: strings quoted, None as null."""
    text = "null" if value is None else repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``"line 3, column 5: <problem> (while parsing ... that starts at line 2, column 1)"``: PyYAML's
    error without its quoted source lines."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"is not valid YAML: {str(exc).strip().splitlines()[0]}"
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    during = f" ({context} that starts at line {cmark.line + 1}, column {cmark.column + 1})" if context and cmark else ""
    return f"{where}: {problem}{during}"


def one_sentence(exc: BaseException) -> str:
    """``exc`` as one line for the console: a pydantic error that was not made a :class:`ConfigError`
    as its first refused keys, a PyYAML error without its quoted source lines, anything else as is."""
    if isinstance(exc, ValidationError):
        log.debug("%s", exc)
        errs = exc.errors()
        listed = "; ".join(f"{'.'.join(map(str, e['loc'])) or exc.title} = {_shown(e.get('input'))}: "
                           f"{e['msg'][0].lower() + e['msg'][1:]}" for e in errs[:MAX_LISTED])
        more = f"; and {len(errs) - MAX_LISTED} more" if len(errs) > MAX_LISTED else ""
        return f"{exc.title} refused {listed}{more}"
    if isinstance(exc, yaml.YAMLError):
        log.debug("%s", exc)
        return f"a YAML text {yaml_problem(exc)}"
    return str(exc)
