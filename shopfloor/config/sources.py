"""Validation of each source's connector-specific settings and tags, with file:line:key errors.

Loads the connector plugins the config names (only those) and checks tags point at real signals.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from shopfloor.config.errors import ConfigError, ConfigIssue
from shopfloor.config.load import issue_at, issues_from_validation
from shopfloor.config.schema import PlantConfig
from shopfloor.config.yaml_source import LocatedDocument
from shopfloor.plugins import PluginError, load


def validate_sources(cfg: PlantConfig, doc: LocatedDocument) -> dict[str, tuple[Any, BaseModel, list[Any]]]:
    """Per enabled source: (connector class, settings, tags). Raises ConfigError with every issue."""
    issues: list[ConfigIssue] = []
    out: dict[str, tuple[Any, BaseModel, list[Any]]] = {}
    signals = {(a.path, s.name) for a in cfg.assets for s in a.signals}
    for i, src in enumerate(cfg.sources):
        if not src.enabled:
            continue
        try:
            cls = load(src.connector)
        except PluginError as exc:
            issues.append(issue_at(doc, ("sources", i, "connector"), str(exc)))
            continue
        spec = cls.spec
        try:
            settings = spec.settings_model.model_validate(src.settings)
        except ValidationError as exc:
            issues += issues_from_validation(exc, doc, spec.settings_model, ("sources", i, "settings"))
            settings = None
        tags = []
        for j, raw in enumerate(src.tags):
            try:
                tag = spec.tag_model.model_validate(raw)
            except ValidationError as exc:
                issues += issues_from_validation(exc, doc, spec.tag_model, ("sources", i, "tags", j))
                continue
            if (tag.asset, tag.signal) not in signals:
                where = "signal" if any(a.path == tag.asset for a in cfg.assets) else "asset"
                issues.append(
                    issue_at(
                        doc,
                        ("sources", i, "tags", j, where),
                        f"no signal {tag.signal!r} on asset {tag.asset!r} in this config's assets",
                    )
                )
                continue
            tags.append(tag)
        if settings is not None:
            out[src.name] = (cls, settings, tags)
    if issues:
        raise ConfigError(issues)
    return out
