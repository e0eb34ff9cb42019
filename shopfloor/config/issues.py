"""Turning validation failures into located issues: file:line:column, dotted key, message, suggestion.

Shared by the plant config loader and the per-source (connector) validation.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from shopfloor.config.errors import ConfigIssue
from shopfloor.config.yaml_source import LocatedDocument


def issue_at(doc: LocatedDocument, loc: tuple[int | str, ...], message: str) -> ConfigIssue:
    pos = doc.position_of(loc)
    return ConfigIssue(doc.file, pos.line if pos else None, pos.column if pos else None, loc, message)


def issues_from_validation(
    exc: ValidationError, doc: LocatedDocument, model: type[BaseModel], base: tuple[int | str, ...] = ()
) -> list[ConfigIssue]:
    """Turn pydantic errors into located issues; ``base`` prefixes locations of a sub-document."""
    issues = []
    for err in exc.errors(include_url=False):
        loc = base + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}" + _suggest(model, err["loc"])
        elif err["type"] == "missing":
            msg = f"required key {loc[-1]!r} is missing"
        elif (
            "input" in err
            and err["type"] not in ("value_error",)
            and not isinstance(err["input"], dict | list)
        ):
            msg = f"{msg} (got {err['input']!r})"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        issues.append(issue_at(doc, loc, msg))
    return issues


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """'; did you mean …' for an unknown key, walking the model along ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return ""
        current = _inner_model(field.annotation)
        if current is None:
            return ""
    fields = list(getattr(current, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    valid = ", ".join(fields)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid keys: {valid})"


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
