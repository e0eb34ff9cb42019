"""The plant config as typed models: asset tree, signals, sources and historian settings.

Pydantic validates it and exports the JSON Schema that editors use to complete the YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shopfloor.config.dashboard import DashboardConfig
from shopfloor.config.delivery import (  # noqa: F401 - re-exported: their home before delivery.py
    BatchConfig,
    FsyncPolicy,
    RetryConfig,
    SpoolConfig,
    WhenFull,
    parse_size,
)
from shopfloor.config.historian_url import parse_url
from shopfloor.config.ingest import IngestConfig
from shopfloor.config.mes import MesConfig, mes_consistency_issues
from shopfloor.config.publish import PublishConfig
from shopfloor.model import ASSET_PATH_RE, SIGNAL_NAME_RE, SignalType
from shopfloor.secrets import refuse_literal_secrets

# The historian block reads its secrets from password_env/_file (InfluxDB v1) and token_env/_file (v2).
HISTORIAN_SECRET_KEYS = ("password", "token")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class SignalConfig(_Model):
    """One signal of an asset."""

    name: str = Field(description="Signal name, unique within its asset, e.g. roll_force.")
    unit: str = Field("", description="Engineering unit, e.g. kN, degC, mm, kW.")
    type: SignalType = Field(SignalType.FLOAT, description="Data type carried by the signal.")
    description: str = ""
    range: tuple[float, float] | None = Field(None, description="Expected [low, high] range.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SIGNAL_NAME_RE.match(v):
            raise ValueError(
                "signal names start with a letter or '_' and hold letters, digits, '_', '.', '-'"
            )
        return v

    @model_validator(mode="after")
    def _text_has_no_range(self) -> SignalConfig:
        if self.type == SignalType.TEXT and self.range is not None:
            raise ValueError(f"signal {self.name!r} is text: a range has no meaning for it (remove 'range')")
        return self


class AssetConfig(_Model):
    """One piece of equipment in the ISA-95 tree."""

    path: str = Field(description="ISA-95 path site/area/line/asset, e.g. qijiang/copper/hot-rolling/mill-1.")
    kind: str = Field("", description="Equipment class, e.g. cnc, rolling_mill, furnace.")
    description: str = ""
    signals: list[SignalConfig] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not ASSET_PATH_RE.match(v):
            raise ValueError(
                "expected 'site/area/line/asset': 2-8 segments of letters, digits, '_', '.', '-'"
            )
        return v


class SourceConfig(BaseModel):
    """A device or server a connector reads; ``settings`` and ``tags`` belong to the connector.

    The connector plugin validates its own part with its own model (issue: connectors).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Unique source name, e.g. hot-mill-plc.")
    connector: str = Field(description="Connector plugin name (entry point in shopfloor.connectors).")
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    tags: list[dict[str, Any]] = Field(default_factory=list)


class HistorianConfig(_Model):
    """Where samples and events are stored, and how the writer delivers them."""

    url: str = Field(
        "sqlite:///var/shopfloor.db",
        description=(
            "sqlite:///PATH | influxdb-v1+http://HOST:PORT/DATABASE | "
            "influxdb-v2+http://HOST:PORT/BUCKET?org=ORG (https also accepted)."
        ),
    )
    username: str | None = Field(None, description="InfluxDB v1 user name (not secret).")
    password_env: str | None = Field(None, description="Environment variable holding the v1 password.")
    password_file: Path | None = Field(None, description="File holding the v1 password.")
    token_env: str | None = Field(None, description="Environment variable holding the v2 token.")
    token_file: Path | None = Field(None, description="File holding the v2 token.")
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    create_database: bool = Field(True, description="InfluxDB v1: create the database if missing.")
    batch: BatchConfig = BatchConfig()
    spool: SpoolConfig = SpoolConfig()
    retry: RetryConfig = RetryConfig()
    health_interval_s: Annotated[float, Field(ge=0)] = Field(
        10.0, description="How often the writer stores its own counters (0 = never)."
    )
    stop_timeout_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0,
        description=(
            "At stop, how long to wait for pending points to reach the store; what is left stays in "
            "the spool for the next start. Not waited for while the store is unreachable."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        refuse_literal_secrets(data, HISTORIAN_SECRET_KEYS)
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_url(v)
        return v


class PlantConfig(_Model):
    """A whole plant: one file describes the asset tree, the sources and the historian."""

    version: Literal[1] = 1
    site: str = Field(description="Site name; the first segment of every asset path.")
    name: str = Field("", description="Human-readable plant name.")
    description: str = ""
    timezone: str = Field("UTC", description="Plant time zone for shift calendars and displays.")
    assets: list[AssetConfig] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)
    historian: HistorianConfig = HistorianConfig()
    mes: MesConfig = MesConfig()
    dashboard: DashboardConfig = DashboardConfig()
    publish: PublishConfig | None = Field(
        None,
        description="The MQTT broker `shopfloor acquire` publishes every sample and event to (docs/uns.md).",
    )
    ingest: IngestConfig | None = Field(
        None,
        description="The MQTT broker `shopfloor ingest` reads the unified namespace from into the historian "
        "(docs/uns.md).",
    )

    def asset(self, path: str) -> AssetConfig:
        for a in self.assets:
            if a.path == path:
                return a
        raise KeyError(path)


def consistency_issues(cfg: PlantConfig) -> list[tuple[tuple[int | str, ...], str]]:
    """Cross-field problems (duplicates, paths outside the site) as (location, message) pairs."""
    out: list[tuple[tuple[int | str, ...], str]] = []
    seen: dict[str, int] = {}
    for i, a in enumerate(cfg.assets):
        if a.path in seen:
            out.append(
                (("assets", i, "path"), f"duplicate asset path {a.path} (first in assets[{seen[a.path]}])")
            )
        else:
            seen[a.path] = i
        if a.path.split("/", 1)[0] != cfg.site:
            out.append((("assets", i, "path"), f"path {a.path} does not start with site {cfg.site!r}"))
        names: dict[str, int] = {}
        for j, s in enumerate(a.signals):
            if s.name in names:
                out.append(
                    (
                        ("assets", i, "signals", j, "name"),
                        f"duplicate signal {s.name!r} in {a.path} (first at signals[{names[s.name]}])",
                    )
                )
            else:
                names[s.name] = j
    sources: dict[str, int] = {}
    for i, src in enumerate(cfg.sources):
        if src.name in sources:
            out.append((("sources", i, "name"), f"duplicate source name {src.name!r}"))
        else:
            sources[src.name] = i
    out += mes_consistency_issues(cfg.mes, {a.path: {s.name for s in a.signals} for a in cfg.assets})
    return out
