"""Load and validate a plant config file into a PlantConfig, or explain every error.

Errors carry file:line:column, the dotted key, what was wrong and, for unknown keys, a suggestion.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from shopfloor.config.errors import ConfigError, ConfigIssue
from shopfloor.config.issues import issue_at, issues_from_validation
from shopfloor.config.schema import HISTORIAN_SECRET_KEYS, PlantConfig, consistency_issues
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import LocatedDocument, load_yaml, parse_yaml
from shopfloor.secrets import literal_secret_message


def load_plant_config(path: str | Path, check_sources: bool = False) -> PlantConfig:
    """Read and validate ``path``; raise :class:`ConfigError` listing every problem.

    With ``check_sources`` the connector plugins named by enabled sources are loaded and their
    settings and tags validated too (``shopfloor config validate`` and ``acquire`` do this).
    """
    doc = load_yaml(path)
    cfg = validate_document(doc)
    if check_sources:
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
        hist = {k: v for k, v in data["historian"].items() if k not in HISTORIAN_SECRET_KEYS}
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


def _literal_secrets(doc: LocatedDocument) -> list[ConfigIssue]:
    issues = []
    hist = doc.data.get("historian") if isinstance(doc.data, dict) else None
    if isinstance(hist, dict):
        for key in HISTORIAN_SECRET_KEYS:
            if key in hist:
                issues.append(issue_at(doc, ("historian", key), literal_secret_message(key)))
    return issues


def json_schema() -> str:
    """The JSON Schema of the plant config, for editors (yaml-language-server)."""
    schema = PlantConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Shopfloor plant config"
    return json.dumps(schema, indent=2, ensure_ascii=False)
