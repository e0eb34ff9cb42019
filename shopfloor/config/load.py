"""Load and validate a plant config file into a PlantConfig, or explain every error.

Errors carry file:line:column, the dotted key, what was wrong and, for unknown keys, a suggestion.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from shopfloor.config.errors import ConfigError, ConfigIssue
from shopfloor.config.schema import PlantConfig, consistency_issues
from shopfloor.config.yaml_source import LocatedDocument, load_yaml, parse_yaml

SECRET_KEYS = ("password", "token")


def load_plant_config(path: str | Path, check_sources: bool = False) -> PlantConfig:
    """Read and validate ``path``; raise :class:`ConfigError` listing every problem.

    With ``check_sources`` the connector plugins named by enabled sources are loaded and their
    settings and tags validated too (``shopfloor config validate`` and ``acquire`` do this).
    """
    doc = load_yaml(path)
    cfg = validate_document(doc)
    if check_sources:
        from shopfloor.config.sources import validate_sources

        validate_sources(cfg, doc)
    return cfg


def parse_plant_config(text: str, file: str = "<string>") -> PlantConfig:
    return validate_document(parse_yaml(text, file))


def validate_document(doc: LocatedDocument) -> PlantConfig:
    if not isinstance(doc.data, dict):
        raise ConfigError(
            [ConfigIssue(doc.file, 1, 1, (), "the plant config must be a mapping (key: value)")]
        )
    issues = _literal_secrets(doc)
    data = doc.data
    if issues:  # report the secrets, and still check everything else in the same pass
        hist = {k: v for k, v in data["historian"].items() if k not in SECRET_KEYS}
        data = {**data, "historian": hist}
    try:
        cfg = PlantConfig.model_validate(data)
    except ValidationError as exc:
        issues += issues_from_validation(exc, doc, PlantConfig)
    if issues:
        raise ConfigError(issues)
    problems = consistency_issues(cfg)
    if problems:
        raise ConfigError([issue_at(doc, loc, msg) for loc, msg in problems])
    return cfg


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


def _literal_secrets(doc: LocatedDocument) -> list[ConfigIssue]:
    issues = []
    hist = doc.data.get("historian") if isinstance(doc.data, dict) else None
    if isinstance(hist, dict):
        for key in SECRET_KEYS:
            if key in hist:
                issues.append(
                    issue_at(
                        doc,
                        ("historian", key),
                        f"secrets may not be written in the config: use {key}_env "
                        f"(an environment variable name) or {key}_file (a file path)",
                    )
                )
    return issues


def json_schema() -> str:
    """The JSON Schema of the plant config, for editors (yaml-language-server)."""
    schema = PlantConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Shopfloor plant config"
    return json.dumps(schema, indent=2, ensure_ascii=False)
