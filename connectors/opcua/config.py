"""OPC UA source settings and tag models: endpoint, security, identity, monitoring defaults, groups.

Node ids name their namespace by URI (``nsu=``); indexes are resolved at every connect, never trusted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shopfloor.connector import SettingsBase, TagBase

NS0_URI = "http://opcfoundation.org/UA/"

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
Identity = Literal["anonymous", "username", "certificate"]
DeadbandType = Literal["none", "absolute", "percent"]
Trigger = Literal["status", "status_value", "status_value_timestamp"]
Mode = Literal["subscribe", "poll"]
QualityName = Literal["good", "uncertain", "bad"]

Millis = Annotated[float, Field(ge=0, le=3_600_000)]
PositiveMillis = Annotated[float, Field(gt=0, le=3_600_000)]
QueueSize = Annotated[int, Field(ge=1, le=100_000)]

_NODE_RE = re.compile(r"^(?:(?:nsu=(?P<uri>.+?)|ns=(?P<ns>\d+));)?(?P<kind>[isgb])=(?P<ident>.+)$", re.DOTALL)


@dataclass(frozen=True)
class NodeRef:
    """A node id as configured: namespace URI (None = the source's default) plus the identifier."""

    uri: str | None
    kind: str  # i (numeric), s (string), g (GUID), b (opaque, base64)
    identifier: str

    def text(self, default_uri: str | None = None) -> str:
        uri = self.uri or default_uri
        return f"nsu={uri};{self.kind}={self.identifier}" if uri else f"{self.kind}={self.identifier}"


def parse_node_id(text: str) -> NodeRef:
    """Parse ``nsu=URI;s=...`` (or ``i=``, ``g=``, ``b=``); ``ns=0;`` only for the standard namespace.

    Without a namespace the caller fills in the tag's or source's ``namespace_uri``, else namespace 0.
    """
    m = _NODE_RE.match(text.strip())
    if not m:
        raise ValueError(
            f"invalid node id {text!r}: expected 'nsu=<namespace URI>;s=<name>' "
            "(or i=<number>, g=<guid>, b=<base64>)"
        )
    ns = m.group("ns")
    if ns is not None and int(ns) != 0:
        raise ValueError(
            f"node id {text!r} uses namespace index {ns}: write the namespace URI instead "
            "('nsu=<uri>;...'); indexes can change when the server restarts, so Shopfloor resolves "
            "them at every connect"
        )
    uri = NS0_URI if ns is not None else m.group("uri")
    kind, ident = m.group("kind"), m.group("ident")
    if kind == "i" and not ident.isdigit():
        raise ValueError(f"invalid node id {text!r}: i= needs a non-negative integer")
    return NodeRef(uri, kind, ident)


class MonitoringOverrides(BaseModel):
    """Monitoring parameters a group or a tag may override; unset keys fall through to the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode | None = Field(None, description="subscribe (monitored items) or poll (cyclic Read).")
    publishing_interval_ms: PositiveMillis | None = Field(
        None, description="Subscription publishing interval; tags with the same interval share one."
    )
    sampling_interval_ms: Millis | None = Field(None, description="Server sampling interval (0 = fastest).")
    queue_size: QueueSize | None = Field(None, description="Server-side queue per monitored item.")
    discard_oldest: bool | None = Field(None, description="When the server queue is full, drop the oldest.")
    deadband_type: DeadbandType | None = Field(None, description="none | absolute | percent (of EURange).")
    deadband_value: Annotated[float, Field(ge=0)] | None = None
    trigger: Trigger | None = Field(
        None, description="Report on status, status_value (default) or status_value_timestamp changes."
    )
    poll_interval_ms: PositiveMillis | None = Field(None, description="Read cycle in poll mode.")

    @model_validator(mode="after")
    def _percent_range(self) -> MonitoringOverrides:
        if self.deadband_type == "percent" and self.deadband_value is not None and self.deadband_value > 100:
            raise ValueError(
                "deadband_value is a percentage of EURange when deadband_type is percent (0-100)"
            )
        return self


class MonitoringDefaults(BaseModel):
    """The source-wide monitoring parameters (every key has a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    publishing_interval_ms: PositiveMillis = 250.0
    sampling_interval_ms: Millis = 100.0
    queue_size: QueueSize = 10
    discard_oldest: bool = True
    deadband_type: DeadbandType = "none"
    deadband_value: Annotated[float, Field(ge=0)] = 0.0
    trigger: Trigger = "status_value"


@dataclass(frozen=True)
class Monitoring:
    """The effective parameters of one tag after defaults, group and tag overrides are applied."""

    mode: Mode
    publishing_interval_ms: float
    sampling_interval_ms: float
    queue_size: int
    discard_oldest: bool
    deadband_type: DeadbandType
    deadband_value: float
    trigger: Trigger
    poll_interval_ms: float


class EventSource(BaseModel):
    """A node whose OPC UA events (or Alarms & Conditions) are subscribed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: str = Field(description="The notifier node, e.g. an asset object or i=2253 (Server).")
    asset: str | None = Field(
        None, description="Asset the events belong to; default: the event's source node path, if it is one."
    )
    event_type: str = Field("i=2041", description="Event type node id (default BaseEventType).")
    kind: Literal["alarm", "state_change", "system"] = Field(
        "alarm", description="Event kind stored for events at or above alarm_severity."
    )
    alarm_severity: Annotated[int, Field(ge=0, le=1000)] = Field(
        0, description="Events below this OPC UA severity are stored as kind 'system'."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: object) -> object:
        return {"node_id": data} if isinstance(data, str) else data

    @field_validator("node_id", "event_type")
    @classmethod
    def _node(cls, v: str) -> str:
        parse_node_id(v)
        return v


class OpcUaSettings(SettingsBase):
    """Settings of one OPC UA source (a server endpoint)."""

    endpoint: str = Field(description="opc.tcp://HOST:PORT[/PATH]")
    namespace_uri: str | None = Field(None, description="Default namespace for node ids without nsu=.")
    security_policy: SecurityPolicy = Field(
        "Basic256Sha256", description="None only by explicit choice; real PLCs should sign and encrypt."
    )
    security_mode: SecurityMode = "SignAndEncrypt"
    application_uri: str | None = Field(
        None, description="This client's application URI (default urn:shopfloor:<host>:<source>)."
    )
    trust_dir: Path | None = Field(
        None, description="Trusted server certificates (.der/.pem); default <state>/<source>/pki/trusted."
    )
    identity: Identity = "anonymous"
    username: str | None = None
    password_env: str | None = Field(None, description="Environment variable holding the password.")
    password_file: Path | None = Field(None, description="File holding the password.")
    user_certificate: Path | None = Field(None, description="X.509 user certificate (identity: certificate).")
    user_private_key: Path | None = None
    mode: Mode = "subscribe"
    poll_interval_ms: PositiveMillis = 1000.0
    subscription: MonitoringDefaults = MonitoringDefaults()
    groups: dict[str, MonitoringOverrides] = Field(default_factory=dict)
    events: list[EventSource] = Field(default_factory=list)
    status_overrides: dict[str, QualityName] = Field(
        default_factory=dict, description="Map a status code name (e.g. UncertainInitialValue) to a quality."
    )
    reconnect_initial_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 15.0
    request_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    watchdog_interval_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    item_retry_s: Annotated[float, Field(ge=0, le=86400)] = Field(
        30.0, description="Retry failed monitored items this often while connected (0 = only on reconnect)."
    )
    max_items_per_request: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "'password' may not be written in the config: use password_env (an environment "
                "variable name) or password_file (a file path)"
            )
        return data

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        expected = "expected opc.tcp://HOST:PORT[/PATH]"
        if not v.startswith("opc.tcp://") or any(c.isspace() for c in v):
            raise ValueError(f"invalid endpoint {v!r}: {expected}")
        parts = urlsplit("tcp://" + v[len("opc.tcp://") :])
        if not parts.hostname:
            raise ValueError(f"invalid endpoint {v!r}: it names no host; {expected}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid endpoint {v!r}: the port must be a number from 1 to 65535") from None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"invalid endpoint {v!r}: port {port} is outside 1..65535")
        if parts.username or parts.password:
            raise ValueError(
                f"invalid endpoint {v!r}: credentials may not be written in the endpoint; use "
                "username and password_env/password_file"
            )
        return v

    @field_validator("status_overrides")
    @classmethod
    def _codes(cls, v: dict[str, str]) -> dict[str, str]:
        from connectors.opcua.status_map import check_override

        for name, quality in v.items():
            check_override(name, quality)  # raises with a suggestion when unknown or not allowed
        return v

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSettings:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError(
                "security_policy and security_mode go together: both None, or a policy "
                "(Basic256Sha256, Aes128_Sha256_RsaOaep) with Sign or SignAndEncrypt"
            )
        if self.identity == "username":
            if not self.username:
                raise ValueError("identity 'username' needs username")
            if not (self.password_env or self.password_file):
                raise ValueError("identity 'username' needs password_env or password_file")
            if self.password_env and self.password_file:
                raise ValueError("give password_env or password_file, not both")
        if self.identity == "certificate" and not (self.user_certificate and self.user_private_key):
            raise ValueError("identity 'certificate' needs user_certificate and user_private_key")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self

    def monitoring(self, tag: OpcUaTag) -> Monitoring:
        """Tag overrides, then its group, then the source defaults."""
        d = self.subscription
        layers: list[BaseModel] = [tag]
        if tag.group is not None:
            group = self.groups.get(tag.group)
            if group is None:
                known = ", ".join(sorted(self.groups)) or "none defined"
                raise ValueError(
                    f"tag {tag.asset}/{tag.signal}: unknown group {tag.group!r} (groups: {known})"
                )
            layers.append(group)

        def pick(key: str, default: object) -> object:
            for layer in layers:
                value = getattr(layer, key, None)
                if value is not None:
                    return value
            return default

        return Monitoring(
            mode=pick("mode", self.mode),  # type: ignore[arg-type]
            publishing_interval_ms=float(pick("publishing_interval_ms", d.publishing_interval_ms)),  # type: ignore[arg-type]
            sampling_interval_ms=float(pick("sampling_interval_ms", d.sampling_interval_ms)),  # type: ignore[arg-type]
            queue_size=int(pick("queue_size", d.queue_size)),  # type: ignore[call-overload]
            discard_oldest=bool(pick("discard_oldest", d.discard_oldest)),
            deadband_type=pick("deadband_type", d.deadband_type),  # type: ignore[arg-type]
            deadband_value=float(pick("deadband_value", d.deadband_value)),  # type: ignore[arg-type]
            trigger=pick("trigger", d.trigger),  # type: ignore[arg-type]
            poll_interval_ms=float(pick("poll_interval_ms", self.poll_interval_ms)),  # type: ignore[arg-type]
        )


class OpcUaTag(TagBase):
    """One variable read into one signal; monitoring keys override the group and source defaults."""

    node_id: str = Field(description="nsu=<namespace URI>;s=<identifier> (or i=, g=, b=)")
    namespace_uri: str | None = Field(None, description="Namespace of a node id written without nsu=.")
    group: str | None = Field(None, description="Name of a monitoring group in the source's settings.")
    mode: Mode | None = None
    publishing_interval_ms: PositiveMillis | None = None
    sampling_interval_ms: Millis | None = None
    queue_size: QueueSize | None = None
    discard_oldest: bool | None = None
    deadband_type: DeadbandType | None = None
    deadband_value: Annotated[float, Field(ge=0)] | None = None
    trigger: Trigger | None = None
    poll_interval_ms: PositiveMillis | None = None

    @model_validator(mode="after")
    def _node(self) -> OpcUaTag:
        ref = parse_node_id(self.node_id)
        if ref.uri and self.namespace_uri and ref.uri != self.namespace_uri:
            raise ValueError(
                f"node_id names namespace {ref.uri!r} but namespace_uri is {self.namespace_uri!r}"
            )
        if self.deadband_type == "percent" and self.deadband_value is not None and self.deadband_value > 100:
            raise ValueError(
                "deadband_value is a percentage of EURange when deadband_type is percent (0-100)"
            )
        return self

    def ref(self, default_uri: str | None) -> NodeRef:
        """The node reference with its namespace URI filled in: tag, then source default, then ns 0."""
        ref = parse_node_id(self.node_id)
        if ref.uri is None:
            ref = NodeRef(self.namespace_uri or default_uri or NS0_URI, ref.kind, ref.identifier)
        return ref


def check_groups(
    settings: OpcUaSettings, tags: Sequence[OpcUaTag]
) -> list[tuple[tuple[int | str, ...], str]]:
    """Every tag's monitoring group must be defined in the settings (reported at the tag's line)."""
    known = ", ".join(sorted(settings.groups)) or "none defined"
    return [
        (("tags", i, "group"), f"unknown monitoring group {t.group!r} (groups: {known})")
        for i, t in enumerate(tags)
        if t.group is not None and t.group not in settings.groups
    ]
