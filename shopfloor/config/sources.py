"""Validation of each source's connector-specific settings and tags, with file:line:key errors.

Loads the connector plugins the config names (only those) and checks tags point at real signals.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from shopfloor.config.errors import ConfigError, ConfigIssue
from shopfloor.config.issues import issue_at, issues_from_validation
from shopfloor.config.schema import PlantConfig
from shopfloor.config.yaml_source import LocatedDocument
from shopfloor.plugins import PluginError, load
from shopfloor.secrets import SECRET_KEYS, literal_secret_message


def validate_sources(cfg: PlantConfig, doc: LocatedDocument) -> dict[str, tuple[Any, BaseModel, list[Any]]]:
    """Per enabled source: (connector class, settings, tags). Raises ConfigError with every issue.

    Disabled sources are validated just the same (a misspelt key must not wait until the day
    someone enables the source); they are only left out of the result.
    """
    issues: list[ConfigIssue] = []
    out: dict[str, tuple[Any, BaseModel, list[Any]]] = {}
    signals = {(a.path, s.name) for a in cfg.assets for s in a.signals}
    for i, src in enumerate(cfg.sources):
        try:
            cls = load(src.connector)
        except PluginError as exc:
            issues.append(issue_at(doc, ("sources", i, "connector"), str(exc)))
            continue
        spec = cls.spec
        raw_settings = dict(src.settings)
        for key in sorted(SECRET_KEYS & set(raw_settings)):  # a kernel rule, whatever the plugin says
            issues.append(issue_at(doc, ("sources", i, "settings", key), literal_secret_message(key)))
            del raw_settings[key]
        try:
            settings = spec.settings_model.model_validate(raw_settings)
        except ValidationError as exc:
            issues += issues_from_validation(exc, doc, spec.settings_model, ("sources", i, "settings"))
            settings = None
        tags = []
        tag_index: list[int] = []  # position in the file of each validated tag
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
            tag_index.append(j)
        if settings is not None and spec.check is not None:
            for loc, message in spec.check(settings, tags):
                if len(loc) >= 2 and loc[0] == "tags" and isinstance(loc[1], int):
                    loc = ("tags", tag_index[loc[1]], *loc[2:])
                issues.append(issue_at(doc, ("sources", i, *loc), message))
        if settings is not None and src.enabled:
            out[src.name] = (cls, settings, tags)
    if issues:
        raise ConfigError(issues)
    return out
