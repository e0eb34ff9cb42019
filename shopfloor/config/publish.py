"""The ``publish:`` section of the plant config: the MQTT broker that acquisition publishes every sample
and event to (the unified namespace), with its credentials, TLS, topic prefix, payload format and delivery.

Secrets come from ``password_env`` / ``password_file`` only; a URL carrying a password is refused.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shopfloor.config.delivery import BatchConfig, RetryConfig, SpoolConfig
from shopfloor.secrets import SecretError, refuse_literal_secrets

PUBLISH_SECRET_KEYS = ("password",)
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttUrl:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS), with an optional user name."""

    scheme: str
    host: str
    port: int
    username: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def redacted(self) -> str:
        """The URL as it may be logged (it never holds a password: those are refused)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse and check a broker URL; ValueError with the reason (a password in it is one)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid broker URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError("the broker URL must start with mqtt:// (plain TCP) or mqtts:// (TLS)")
    if parts.password is not None:
        raise ValueError(
            "the broker URL may not carry a password (it would show in process lists and logs): "
            "give it in publish.password_env or publish.password_file"
        )
    if not parts.hostname:
        raise ValueError("the broker URL names no host, e.g. mqtt://broker.plant.local:1883")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the broker URL is mqtt[s]://host[:port], with no path or query")
    username = unquote(parts.username) if parts.username else None
    return MqttUrl(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], username)


class MqttTlsConfig(BaseModel):
    """TLS to the broker (an ``mqtts://`` URL): whom to trust, and the client certificate, if any."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) the broker's certificate must chain to; default: the system's.",
    )
    cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for certificate authentication."
    )
    key_file: Path | None = Field(
        None, description="Private key (PEM, unencrypted) of cert_file; omit if cert_file holds it."
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("tls.key_file needs tls.cert_file (the client certificate it belongs to)")
        return self

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.ca_file, self.cert_file, self.key_file))

    def ssl_context(self, section: str) -> ssl.SSLContext:
        """The TLS context of an ``mqtts://`` broker: its CA (or the system's) and the client certificate;
        SecretError naming the ``section`` and the file that could not be used (never a key's content)."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise SecretError(
                f"{section}.tls: cannot load the CA or client certificate files: {exc}"
            ) from None
        return ctx


class SparkplugConfig(BaseModel):
    """Who the edge is in Sparkplug B (``format: sparkplug``): spBv1.0/<group_id>/.../<edge_node_id>."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str | None = Field(None, description="Sparkplug group id; default the site.")
    edge_node_id: str | None = Field(
        None, description="Sparkplug edge node id, one per edge process; default the MQTT client id."
    )
    max_metrics_per_message: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        10_000, description="A device's DDATA is split past this many metrics."
    )

    @field_validator("group_id", "edge_node_id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "\x00+#/")):
            raise ValueError("a Sparkplug id is a non-empty name without '/', '+', '#' or NUL")
        return v


class PublishConfig(BaseModel):
    """Where and how acquisition publishes to an MQTT broker; delivery works like the historian writer's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] (TLS, default 8883); "
        "a user name may stand before the host (mqtt://edge-7@HOST), a password never."
    )
    client_id: str | None = Field(
        None,
        description="MQTT client identifier; default shopfloor-<site>-<hostname>. Two processes with one "
        "identifier take the connection from each other: give each edge process its own.",
    )
    username: str | None = Field(None, description="User name at the broker (not secret).")
    password_env: str | None = Field(None, description="Environment variable holding the broker password.")
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: MqttTlsConfig = MqttTlsConfig()
    topic_prefix: str = Field(
        "",
        description="Topic levels ahead of the site, e.g. 'uns/v1' → uns/v1/<site>/<area>/<line>/<asset>/<signal>.",
    )
    format: Literal["json", "sparkplug"] = Field(
        "json",
        description="Payload encoding: 'json' (docs/uns.md) or 'sparkplug' (Sparkplug B samples; events stay "
        "JSON on the topic tree).",
    )
    sparkplug: SparkplugConfig = SparkplugConfig()
    qos: int = Field(
        1, description="MQTT QoS of every publish: 1 (at least once) or 2 (exactly once to the broker)."
    )
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = Field(30, description="MQTT keep-alive interval.")
    timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="How long connecting, or the broker's acknowledgement of a batch, may take."
    )
    max_inflight: Annotated[int, Field(ge=1, le=65535)] = Field(
        1000,
        description="Messages sent ahead of their acknowledgement; the broker's Receive Maximum lowers it.",
    )
    # one message per series per batch: bigger, older batches than the historian's carry more samples
    # per message (the broker's cost is per message), for up to a second of added latency
    batch: BatchConfig = BatchConfig(max_points=20000, max_age_ms=1000)
    spool: SpoolConfig = SpoolConfig(dir=Path("var/spool-mqtt"))
    retry: RetryConfig = RetryConfig()
    health_interval_s: Annotated[float, Field(ge=0)] = Field(
        10.0, description="How often the publisher's counters are published as signals (0 = never)."
    )
    stop_timeout_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0,
        description="At stop, how long to wait for pending points to reach the broker (the rest stays spooled).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        refuse_literal_secrets(data, PUBLISH_SECRET_KEYS)
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @field_validator("qos")
    @classmethod
    def _qos(cls, v: int) -> int:
        if v == 0:
            raise ValueError(
                "qos 0 is refused: the broker acknowledges nothing, so a message lost on the way could not "
                "be sent again; use 1 (at least once; the historian's idempotent writes remove duplicates)"
            )
        if v not in (1, 2):
            raise ValueError("qos must be 1 or 2")
        return v

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v.encode()) > 65535 or any(c in v for c in "\x00+#/")):
            raise ValueError("client_id must be a non-empty identifier without '/', '+', '#' or NUL")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        p = v[:-1] if v.endswith("/") else v
        if p and (p.startswith("$") or any(c in p for c in "+#\x00") or "" in p.split("/")):
            raise ValueError(
                "topic_prefix is topic levels such as 'uns/v1': no empty level, '+', '#' or leading '$'"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PublishConfig:
        url = parse_mqtt_url(self.url)
        if self.tls.configured and not url.tls:
            raise ValueError("tls settings need an mqtts:// URL (this one is plain mqtt://)")
        if url.username and self.username and url.username != self.username:
            raise ValueError(f"the URL names user {url.username!r} but username is {self.username!r}")
        if (self.password_env or self.password_file) and not (url.username or self.username):
            raise ValueError("a password needs a user name: set username (or user@ in the URL)")
        return self

    @property
    def broker(self) -> MqttUrl:
        return parse_mqtt_url(self.url)

    @property
    def user(self) -> str | None:
        return self.username or self.broker.username

    def edge_id(self, site: str) -> str:
        """The name this edge process goes by: its counters' asset and, in Sparkplug, its edge node id."""
        return self.sparkplug.edge_node_id or self.resolved_client_id(site)

    def resolved_client_id(self, site: str) -> str:
        """``client_id``, or ``shopfloor-<site>-<hostname>`` (made identifier-safe)."""
        if self.client_id:
            return self.client_id
        host = socket.gethostname().split(".", 1)[0] or "host"
        return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"shopfloor-{site}-{host}")
