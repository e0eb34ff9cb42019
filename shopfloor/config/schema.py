"""The plant config as typed models: asset tree, signals, sources and historian settings.

Pydantic validates it and exports the JSON Schema that editors use to complete the YAML.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shopfloor.config.dashboard import DashboardConfig
from shopfloor.config.historian_url import parse_url
from shopfloor.config.mes import MesConfig, mes_consistency_issues
from shopfloor.model import ASSET_PATH_RE, SIGNAL_NAME_RE, SignalType
from shopfloor.secrets import literal_secret_message

# The historian block reads its secrets from password_env/_file (InfluxDB v1) and token_env/_file (v2).
HISTORIAN_SECRET_KEYS = ("password", "token")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    None: 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """``1073741824``, ``"1GiB"``, ``"512 MB"`` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB")
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"expected a size such as 512MiB or 2GB, got {value!r}")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _UNITS[unit])


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


class WhenFull(StrEnum):
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class FsyncPolicy(StrEnum):
    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


class BatchConfig(_Model):
    max_points: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="Send when this many points are waiting."
    )
    max_age_ms: Annotated[int, Field(ge=1, le=600_000)] = Field(
        200, description="Send when the oldest waiting point is this old."
    )


class SpoolConfig(_Model):
    dir: Path = Field(Path("var/spool"), description="Directory of the on-disk spool.")
    max_bytes: int = Field(1 << 30, description="Byte bound of the spool, e.g. 1GiB.")
    segment_bytes: int = Field(8 << 20, description="Size at which a spool segment file rotates.")
    when_full: WhenFull = Field(
        WhenFull.DROP_OLDEST, description="What to drop when the bound is reached; every drop is counted."
    )
    fsync: FsyncPolicy = Field(FsyncPolicy.INTERVAL, description="When the spool is fsynced.")
    fsync_interval_ms: Annotated[int, Field(ge=10)] = 1000

    @field_validator("max_bytes", "segment_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @model_validator(mode="after")
    def _bounds(self) -> SpoolConfig:
        if self.segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4KiB")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("max_bytes must be at least twice segment_bytes")
        return self


class RetryConfig(_Model):
    initial_ms: Annotated[int, Field(ge=1)] = 200
    max_ms: Annotated[int, Field(ge=1)] = 30_000
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    probe_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = Field(
        1000,
        description=(
            "While the store does not answer at all, ask its health endpoint this often and resume "
            "as soon as it answers, instead of waiting out the backoff."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> RetryConfig:
        if self.max_ms < self.initial_ms:
            raise ValueError(f"max_ms ({self.max_ms}) must be at least initial_ms ({self.initial_ms})")
        return self


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
        if isinstance(data, dict):
            for key in HISTORIAN_SECRET_KEYS:
                if key in data:
                    raise ValueError(literal_secret_message(key))
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
