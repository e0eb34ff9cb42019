"""The ``ingest:`` section of the plant config: the MQTT broker the central ``shopfloor ingest`` reads the
unified namespace from (share group, persistent session, batching, quarantine) into the historian.

The broker fields (URL, client id, user, password from env/file, TLS, topic prefix) mean what they mean
in ``publish:`` and are checked by ``PublishConfig``'s own validators (``broker_settings``).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shopfloor.config.delivery import BatchConfig, RetryConfig
from shopfloor.config.publish import PUBLISH_SECRET_KEYS, MqttTlsConfig, PublishConfig
from shopfloor.secrets import refuse_literal_secrets

DEFAULT_GROUP = "shopfloor-ingest"
_BROKER_FIELDS = ("url", "client_id", "username", "password_env", "password_file", "tls", "topic_prefix",
                  "keepalive_s", "timeout_s")  # fmt: skip


class IngestConfig(BaseModel):
    """Where the central ingest reads the unified namespace from, and how it delivers to the historian."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        None,
        description="mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS); `shopfloor ingest --from` overrides it. "
        "A user name may stand before the host, a password never.",
    )
    client_id: str | None = Field(
        None,
        description="MQTT client identifier, the key of the persistent session; default <group>-<hostname>. "
        "Every ingest process needs its own, stable across restarts.",
    )
    username: str | None = Field(None, description="User name at the broker (not secret).")
    password_env: str | None = Field(None, description="Environment variable holding the broker password.")
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: MqttTlsConfig = MqttTlsConfig()
    topic_prefix: str = Field("", description="The publishers' topic_prefix, e.g. 'uns/v1'.")
    group: str = Field(
        DEFAULT_GROUP,
        description="Shared-subscription group ($share/GROUP/...): ingest processes of one group split the "
        "messages between them. '' subscribes without a group (one ingest process only; on Mosquitto 2.0 "
        "the only kind of subscription its persistence restores after a broker restart).",
    )
    sparkplug_groups: list[str] = Field(
        default_factory=lambda: ["+"],
        description="Sparkplug B groups read as a host (spBv1.0/<group>/#; '+' every group, [] none). Never "
        "shared: a Sparkplug host must see all of an edge node's messages, so with several ingests give each "
        "its own groups.",
    )
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    timeout_s: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="How long connecting or subscribing may take."
    )
    session_expiry_s: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] = Field(
        86400,
        description="How long the broker keeps the session (its subscription and unacknowledged and queued "
        "messages) while this ingest is away.",
    )
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = Field(
        2000,
        description="Unacknowledged messages the broker may send ahead (MQTT 5 Receive Maximum); each is "
        "acknowledged only once the historian has stored it.",
    )
    batch: BatchConfig = BatchConfig()
    max_pending_points: Annotated[int, Field(ge=1)] = Field(
        1_000_000,
        description="Points received but not yet stored above which ingest stops reading (it disconnects; "
        "the broker keeps the messages) until the historian has caught up.",
    )
    retry: RetryConfig = RetryConfig()
    dir: Path = Field(
        Path("var/ingest"), description="Directory of the quarantine files (malformed messages, refusals)."
    )
    health_interval_s: Annotated[float, Field(ge=0)] = Field(
        10.0, description="How often the ingest's counters are stored as signals (0 = never)."
    )
    stale_after_s: Annotated[float, Field(gt=0)] = Field(
        60.0, description="An edge publisher or a line with no message for this long is reported stale."
    )
    stop_timeout_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0, description="At stop, how long to wait for the historian to take what was received."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        refuse_literal_secrets(data, PUBLISH_SECRET_KEYS)
        return data

    @field_validator("group")
    @classmethod
    def _group(cls, v: str) -> str:
        if any(c in v for c in "/+#\x00"):
            raise ValueError("group must be a name without '/', '+', '#' or NUL ('' for no group)")
        return v

    @field_validator("sparkplug_groups")
    @classmethod
    def _sparkplug_groups(cls, v: list[str]) -> list[str]:
        for g in v:
            if g != "+" and (not g or any(c in g for c in "/+#\x00")):
                raise ValueError(
                    f"sparkplug group {g!r}: a group id without '/', '+', '#' or NUL, or '+' for all"
                )
        if "+" in v and len(v) > 1:
            raise ValueError("'+' already reads every Sparkplug group: list it alone")
        return v

    @model_validator(mode="after")
    def _broker(self) -> IngestConfig:
        if self.url is not None:
            self.broker_settings()
        return self

    def broker_settings(self) -> PublishConfig:
        """The broker fields as a ``PublishConfig`` (validated by its rules); ValueError with the reason."""
        if self.url is None:
            raise ValueError("no broker: give ingest.url or --from mqtt://HOST[:PORT]")
        fields = {k: getattr(self, k) for k in _BROKER_FIELDS}
        try:
            return PublishConfig.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ").replace("publish.", "ingest.")
            raise ValueError(f"{where}: {msg}" if where else msg) from None

    def resolved_client_id(self) -> str:
        """``client_id``, or ``<group>-<hostname>`` (made identifier-safe)."""
        if self.client_id:
            return self.client_id
        host = socket.gethostname().split(".", 1)[0] or "host"
        return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{self.group or DEFAULT_GROUP}-{host}")

    def subscription(self) -> str:
        """``$share/<group>/[<prefix>/]#``, or ``[<prefix>/]#`` without a group."""
        prefix = self.topic_prefix.rstrip("/")
        tree = f"{prefix + '/' if prefix else ''}#"
        return f"$share/{self.group}/{tree}" if self.group else tree

    def with_overrides(self, **overrides: Any) -> IngestConfig:
        """A copy with the given fields replaced (None leaves a field as it is), validated again;
        ValueError with the reason."""
        data = {
            **self.model_dump(exclude_unset=True),
            **{k: v for k, v in overrides.items() if v is not None},
        }
        try:
            return IngestConfig.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(["ingest", *(str(x) for x in err["loc"])])
            raise ValueError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None
