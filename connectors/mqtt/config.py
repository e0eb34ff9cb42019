"""The MQTT source connector's config models: the broker settings (checked by the publisher's own rules,
``shopfloor.config.publish.PublishConfig``) and the tag grammar (JSON topics or Sparkplug B metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.mqtt.paths import check_filter, parse_path, zone
from shopfloor.config.delivery import RetryConfig
from shopfloor.config.publish import PUBLISH_SECRET_KEYS, MqttTlsConfig, PublishConfig, parse_mqtt_url
from shopfloor.connector import Loc, SettingsBase, TagBase
from shopfloor.secrets import refuse_literal_secrets

SPARKPLUG_NAMESPACE = "spBv1.0"
_BROKER_FIELDS = ("url", "client_id", "username", "password_env", "password_file", "tls", "keepalive_s",
                  "timeout_s")  # fmt: skip
QualityName = Literal["good", "uncertain", "bad"]


class MqttSourceSettings(SettingsBase):
    """One MQTT broker to read from. The broker fields mean what they mean under ``publish:``."""

    url: str = Field(
        description="mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (TLS, 8883); a user name may stand "
        "before the host, a password never."
    )
    client_id: str | None = Field(
        None,
        description="MQTT client identifier; default shopfloor-<source>-<hostname>. With a persistent "
        "session it is the session's key: keep it stable, and give every process its own.",
    )
    username: str | None = Field(None, description="User name at the broker (not secret).")
    password_env: str | None = Field(None, description="Environment variable holding the broker password.")
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: MqttTlsConfig = MqttTlsConfig()
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="How long connecting or subscribing may take."
    )
    session_expiry_s: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = Field(
        0,
        description="0: a clean session each connection (messages published while the connector is away "
        "are not received; a gap is recorded). >0: a persistent session the broker keeps that long, so "
        "QoS 1/2 messages published meanwhile arrive after the reconnect.",
    )
    flush_ms: Annotated[int, Field(ge=1, le=60000)] = Field(
        100, description="Received samples are emitted (and their messages acknowledged) at least this often."
    )
    max_batch: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="... or as soon as this many samples are waiting."
    )
    retry: RetryConfig = RetryConfig()
    rebirth_retry_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        10.0, description="At most one Sparkplug rebirth request (NCMD) per edge node this often."
    )
    sparkplug_host_id: str | None = Field(
        None,
        description="Publish a Sparkplug 3.0 host application STATE (spBv1.0/STATE/<id>, retained, with "
        "an offline will) so edge nodes that wait for a primary host see this connector as it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        refuse_literal_secrets(data, PUBLISH_SECRET_KEYS)
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_mqtt_url(v)  # here too, so an error is located at the url key
        return v

    @field_validator("sparkplug_host_id")
    @classmethod
    def _host_id(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#\x00")):
            raise ValueError("sparkplug_host_id is a non-empty id without '/', '+', '#' or NUL")
        return v

    @model_validator(mode="after")
    def _broker(self) -> MqttSourceSettings:
        self.broker_settings()
        return self

    def broker_settings(self) -> PublishConfig:
        """The broker fields as a ``PublishConfig``, validated by its rules (URL, user, password, TLS)."""
        fields = {k: getattr(self, k) for k in _BROKER_FIELDS}
        try:
            return PublishConfig.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ").replace("publish.", "settings.")
            raise ValueError(f"{where}: {msg}" if where else msg) from None


class SparkplugAddress(BaseModel):
    """One Sparkplug B metric: of an edge node (no ``device``) or of one of its devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    edge_node: str
    device: str | None = Field(None, description="Device id; omit for a metric of the edge node itself.")
    metric: str = Field(description="The metric's name as its birth declares it (aliases come from births).")

    @field_validator("group", "edge_node", "device")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#\x00")):
            raise ValueError("a Sparkplug id is non-empty, without '/', '+', '#' or NUL")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not v:
            raise ValueError("a metric name is not empty")
        return v


class MqttTag(TagBase):
    """One signal fed from MQTT: a JSON value on a topic, or a Sparkplug B metric (exactly one of them)."""

    topic: str | None = Field(None, description="MQTT topic filter ('+' and '#' allowed) of JSON messages.")
    payload: Literal["json"] = "json"
    value: str = Field(
        "$",
        description="Where the value is: '$' (the whole payload, a bare number), $.a.b[0], a.b or a JSON "
        "pointer /a/b/0.",
    )
    timestamp: str | None = Field(
        None, description="Path of the source timestamp; without one the receive time is used."
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto", description="Unit of numeric timestamps (auto: by magnitude); strings are ISO 8601."
    )
    timezone: str | None = Field(
        None, description="Zone of ISO 8601 timestamps without an offset (refused without one)."
    )
    quality: str | None = Field(None, description="Path of a quality field; without one: Good.")
    quality_map: dict[str, QualityName] | None = Field(
        None,
        description='Raw quality (as JSON text: 0, true, "OK" is OK) -> good / uncertain / bad; default: '
        "0/1/2, 192, true/false and the names good/uncertain/bad.",
    )
    sparkplug: SparkplugAddress | None = None
    scale: float = Field(1.0, description="value = raw * scale + offset (numeric signals).")
    offset: float = 0.0

    @field_validator("quality_map", mode="before")
    @classmethod
    def _map_keys(cls, v: Any) -> Any:
        if isinstance(v, dict):  # YAML reads 0 and true as numbers and booleans: keys are their JSON text
            return {("true" if k else "false") if isinstance(k, bool) else str(k): q for k, q in v.items()}
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> MqttTag:
        if (self.topic is None) == (self.sparkplug is None):
            raise ValueError("a tag has exactly one of 'topic' (JSON messages) and 'sparkplug' (a metric)")
        json_only = {"value": "$", "timestamp": None, "quality": None, "quality_map": None, "timezone": None}
        if self.sparkplug is not None:
            for key, default in json_only.items():
                if getattr(self, key) != default:
                    raise ValueError(f"'{key}' is for JSON tags; a Sparkplug metric brings its own")
            return self
        assert self.topic is not None
        try:
            check_filter(self.topic)
        except ValueError as exc:
            raise ValueError(f"topic: {exc}") from None
        if self.topic.split("/", 1)[0] == SPARKPLUG_NAMESPACE:
            raise ValueError(f"{self.topic!r} is Sparkplug B (protobuf): map it with 'sparkplug:'")
        for key in ("value", "timestamp", "quality"):
            text = getattr(self, key)
            if text is not None:
                try:
                    parse_path(text)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        zone(self.timezone)
        if self.quality_map is not None and self.quality is None:
            raise ValueError("quality_map needs 'quality' (the path of the quality field)")
        return self

    def label(self) -> str:
        """How logs and health name the tag."""
        if self.sparkplug is not None:
            s = self.sparkplug
            where = f"{s.group}/{s.edge_node}" + (f"/{s.device}" if s.device else "")
            return f"sparkplug {where} {s.metric!r}"
        return f"{self.topic} {self.value}"


def check_tags(settings: MqttSourceSettings, tags: Sequence[MqttTag]) -> list[tuple[Loc, str]]:
    """Cross-tag rules: one tag per signal, one signal per Sparkplug metric."""
    out: list[tuple[Loc, str]] = []
    signals: dict[tuple[str, str], int] = {}
    metrics: dict[SparkplugAddress, int] = {}
    for i, t in enumerate(tags):
        first = signals.setdefault((t.asset, t.signal), i)
        if first != i:
            out.append(
                (("tags", i, "signal"), f"{t.asset} {t.signal} is already fed by tag {first} of this source")
            )
        if t.sparkplug is not None:
            first = metrics.setdefault(t.sparkplug, i)
            if first != i:
                out.append((("tags", i, "sparkplug"), f"this metric is already mapped by tag {first}"))
    return out
