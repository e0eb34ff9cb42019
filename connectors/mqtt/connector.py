"""MqttConnector: one broker subscription (MQTT 5, QoS 1, optional persistent session) whose JSON and Sparkplug B
messages become samples of the asset tree; messages are acknowledged once their samples were emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from connectors.mqtt.config import MqttSourceSettings, MqttTag, check_tags
from connectors.mqtt.json_map import JsonMapper, Row
from connectors.mqtt.paths import Refused
from connectors.mqtt.sparkplug_map import SparkplugMapper
from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.connector import Connector, ConnectorSpec, Sink, SourceContext
from shopfloor.model import Event, EventKind, Quality, SeriesKey, SignalType, now_ns
from shopfloor.secrets import read_secret
from uns.mqtt_session import ManualAckClient, first, until_lost
from uns.sparkplug import SparkplugMessage, host_state

_LOGGED_LIMIT = 1000  # distinct (topic, reason) pairs logged; past it, one line says the rest are not


class MqttConnector(Connector[MqttSourceSettings, MqttTag]):
    """Subscribes to the tags' topics (JSON) and edge nodes (Sparkplug B) on one broker; see
    docs/connectors-mqtt.md for the tag grammar, quality rules, deaths and gaps."""

    spec = ConnectorSpec(
        name="mqtt",
        settings_model=MqttSourceSettings,
        tag_model=MqttTag,
        description="MQTT (JSON payloads, Sparkplug B): third-party publishers mapped into the asset tree",
        check=check_tags,
    )

    def __init__(self, ctx: SourceContext[MqttSourceSettings, MqttTag]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.broker = s.broker_settings()
        self.url = self.broker.broker
        self.where = f"MQTT broker {self.url.redacted()}"
        self.client_id = s.client_id or re.sub(
            r"[^A-Za-z0-9_.\-]",
            "_",
            f"shopfloor-{ctx.name}-{socket.gethostname().split('.', 1)[0] or 'host'}",
        )
        self.keys = tuple(SeriesKey(t.asset, t.signal) for t in ctx.tags)
        text = frozenset(
            i for i, t in enumerate(ctx.tags)
            if (sig := ctx.signals.get((t.asset, t.signal))) is not None and sig.type == SignalType.TEXT
        )  # fmt: skip
        self.json = JsonMapper([(i, t) for i, t in enumerate(ctx.tags) if t.topic is not None], text)
        self.sparkplug = SparkplugMapper(
            [(i, t) for i, t in enumerate(ctx.tags) if t.sparkplug is not None],
            text,
            rebirth_retry_ns=int(s.rebirth_retry_s * 1e9),
        )
        self.filters = self.json.filters() + self.sparkplug.filters()
        self.assets = sorted({t.asset for t in ctx.tags})
        rc = s.retry
        self._backoff = Backoff(rc.initial_ms / 1000, rc.max_ms / 1000, rc.multiplier)
        self._rows: list[Row] = []
        self._acks: list[tuple[ManualAckClient, int, int]] = []  # messages whose rows wait to be emitted
        self._conn: ManualAckClient | None = None
        self._password: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._state_birth: SparkplugMessage | None = None
        self._state_death: SparkplugMessage | None = None
        self._numbers = 0
        self._sink: Sink | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._logged: set[tuple[str, str]] = set()
        self.logged_kinds: set[str] = set()
        self._lost_at_ns: int | None = None
        self._lost_reason = ""
        # counters (describe())
        self.received = 0
        self.ignored = 0  # messages no tag maps (an overlapping subscription, a command)
        self.acked = 0
        self.emitted = 0
        self.refused: dict[str, int] = {}
        self.connections = 0

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        self._sink = sink
        self._password = read_secret(
            self.broker.password_env, self.broker.password_file, "mqtt source password"
        )
        self._tls = self.broker.tls.ssl_context("settings") if self.url.tls else None
        name = self.ctx.name
        self._tasks = [
            self.spawn(self._connect_loop(), f"mqtt-{name}-connection"),
            self.spawn(self._flush_loop(), f"mqtt-{name}-flush"),
        ]

    async def stop(self) -> None:
        """Emit what has arrived, acknowledge it, leave the broker (a persistent session stays)."""
        if not self._tasks:
            self.tracker.on_stopped()
            return
        self._stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=self.ctx.settings.timeout_s + 5.0)
        for t in pending:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self.flush()
        self.tracker.on_stopped()

    def describe(self) -> dict[str, Any]:
        return {
            "broker": self.url.redacted(),
            "client_id": self.client_id,
            "subscriptions": list(self.filters),
            "persistent_session": self.ctx.settings.session_expiry_s > 0,
            "received": self.received,
            "ignored": self.ignored,
            "emitted": self.emitted,
            "acked": self.acked,
            "refused": dict(self.refused),
            "connections": self.connections,
            "rebirths_requested": self.sparkplug.rebirths_requested,
            "sparkplug_nodes": self.sparkplug.online_nodes(),
        }

    # -- receiving -------------------------------------------------------------------------------
    def _on_message(self, conn: ManualAckClient, message: paho.MQTTMessage) -> None:
        """paho's on_message, on the loop: map, queue the rows and the acknowledgement. Never raises."""
        if message.qos:  # acknowledged at the next flush, whatever becomes of it
            self._acks.append((conn, message.mid, message.qos))
        try:
            self._take(conn, message)
        except Exception:  # a bug here must not end paho's loop; the message is counted, logged once
            self._count("internal")
            if "internal" not in self.logged_kinds:
                self.logged_kinds.add("internal")
                self.ctx.log.exception(
                    "source %s: cannot map a message on %r", self.ctx.name, message._topic[:200]
                )

    def _take(self, conn: ManualAckClient, message: paho.MQTTMessage) -> None:
        received = now_ns()
        self.received += 1
        topic = message._topic.decode("utf-8", errors="replace")
        payload = bytes(message.payload)
        if self.sparkplug.handles(topic):
            res = self.sparkplug.feed(topic, payload, received)
            for m in res.publish:  # rebirth requests (NCMD)
                conn.publish_nowait(m.topic, m.payload, m.qos, m.retain)
            for change in res.changes:
                self.ctx.log.info("source %s: %s", self.ctx.name, change)
            rows, refused = res.rows, [(t, r) for t, r in res.refused]
            labels = [(None if t is None else t.label(), r) for t, r in refused]
        else:
            rows, refused_plans = self.json.map(topic, payload, received, retained=bool(message.retain))
            if not rows and not refused_plans and not self.json.plans_for(topic):
                self.ignored += 1
            labels = [(None if p is None else p.tag.label(), r) for p, r in refused_plans]
        for label, r in labels:
            self._refuse(topic, label, r)
        self._rows += rows
        if len(self._rows) >= self.ctx.settings.max_batch:
            self.flush()

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        kind = f"refused.{reason}"
        self.tracker.errors[kind] = self.tracker.errors.get(kind, 0) + 1

    def _refuse(self, topic: str, label: str | None, r: Refused) -> None:
        """Count by reason; log once per (topic, reason)."""
        self._count(r.reason)
        self.tracker.last_error = f"{r.reason}: {r.detail}"
        key = (topic, r.reason)
        if key in self._logged:
            return
        if len(self._logged) == _LOGGED_LIMIT:
            self.ctx.log.warning(
                "source %s: %d topic/reason pairs logged; further ones are only counted", self.ctx.name,
                _LOGGED_LIMIT,
            )  # fmt: skip
            self._logged.add(("", ""))
            return
        if len(self._logged) > _LOGGED_LIMIT:
            return
        self._logged.add(key)
        self.ctx.log.warning(
            "source %s: message on %s refused (%s%s): %s (counted; logged once per topic and reason)",
            self.ctx.name, topic[:200], r.reason, f", tag {label}" if label else "", r.detail,
        )  # fmt: skip

    # -- emitting --------------------------------------------------------------------------------
    def flush(self) -> None:
        """Emit the waiting rows as one batch, then acknowledge their messages in arrival order."""
        rows, self._rows = self._rows, []
        acks, self._acks = self._acks, []
        if rows and self._sink is not None:
            used = sorted({r.tag for r in rows})
            at = {tag: i for i, tag in enumerate(used)}
            has_text = any(r.text is not None for r in rows)
            batch = SampleBatch.from_columns(
                [self.keys[t] for t in used],
                [at[r.tag] for r in rows],
                [r.ts_ns for r in rows],
                [r.value for r in rows],
                [r.quality for r in rows],
                [r.text for r in rows] if has_text else None,
            )
            self._sink.emit(batch)
            self.emitted += len(rows)
            good = [r.ts_ns for r in rows if r.quality == Quality.GOOD]
            self.tracker.on_samples(len(rows), max(good) if good else None, good=len(good))
        for conn, mid, qos in acks:  # a PUBACK is valid only on the connection its message came on
            if conn is self._conn and conn.ack(mid, qos):
                self.acked += 1

    async def _flush_loop(self) -> None:
        every = self.ctx.settings.flush_ms / 1000
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            if self._rows or self._acks:
                self.flush()

    # -- the connection --------------------------------------------------------------------------
    def _client(self) -> ManualAckClient:
        self._numbers += 1
        s = self.ctx.settings
        props = Properties(PacketTypes.CONNECT)
        if s.session_expiry_s:
            props.SessionExpiryInterval = s.session_expiry_s
        will = None
        self._state_birth = None
        if s.sparkplug_host_id:  # Sparkplug 3.0: the will and the birth carry one timestamp
            ts = now_ns() // 1_000_000
            dead = host_state(s.sparkplug_host_id, False, ts)
            will = aiomqtt.Will(dead.topic, dead.payload, dead.qos, dead.retain)
            self._state_birth = host_state(s.sparkplug_host_id, True, ts)
            self._state_death = dead
        return ManualAckClient(
            self._numbers, self._on_message, self.url.host, self.url.port,
            username=self.broker.user, password=self._password, identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5, clean_start=s.session_expiry_s == 0, properties=props,
            timeout=s.timeout_s, keepalive=s.keepalive_s, tls_context=self._tls, will=will,
            logger=logging.getLogger("shopfloor.source.mqtt.client"),
        )  # fmt: skip

    async def _subscribe(self, conn: ManualAckClient) -> None:
        if not self.filters:
            return
        opts = [(f, SubscribeOptions(qos=1, noLocal=True)) for f in self.filters]
        codes = await conn.subscribe(opts, timeout=self.ctx.settings.timeout_s)
        refused = [c for c in codes if getattr(c, "is_failure", False)]
        if refused:
            raise aiomqtt.MqttError(f"the broker refused the subscription: {refused[0]}")

    async def _connect_loop(self) -> None:
        while not self._stop.is_set():
            conn = self._client()
            try:
                await conn.__aenter__()
                # a resumed session delivers right after CONNACK: those messages are this connection's to ack
                self._conn = conn
                await self._subscribe(conn)
                if self._state_birth is not None:
                    m = self._state_birth
                    await conn.publish(
                        m.topic, m.payload, m.qos, m.retain, timeout=self.ctx.settings.timeout_s
                    )
            except aiomqtt.MqttError as exc:
                self._conn = None
                conn.abandon()
                self.tracker.on_disconnected("connect", f"{self.where} as {self.client_id}: {exc}")
                await self._sleep(self._backoff.next())
                continue
            self._backoff.reset()
            self.connections += 1
            self.tracker.on_connected()
            self.ctx.log.info(
                "source %s: subscribed to %d filters at %s as %s (%s)", self.ctx.name, len(self.filters),
                self.where, self.client_id, "session resumed" if conn.session_present else "new session",
            )  # fmt: skip
            self._record_gap(conn.session_present)
            lost = await first(until_lost(conn), self._stop.wait())
            if lost == 0:
                self._conn = None
                self._lost_at_ns = now_ns()
                self._lost_reason = "the broker connection was lost"
                self.tracker.on_disconnected("connection_lost", f"{self.where}: connection lost")
                self._rows += self.sparkplug.connection_lost(self._lost_at_ns)
                self.flush()  # the Bad rows go out; messages of the lost connection are not acknowledged
                conn.abandon()
                await self._sleep(self._backoff.next())
                continue
            self.flush()  # stopping: emit and acknowledge on this connection before leaving
            with contextlib.suppress(Exception):
                if self._state_death is not None:
                    m = self._state_death
                    await conn.publish(m.topic, m.payload, m.qos, m.retain, timeout=2.0)
                await asyncio.wait_for(conn.__aexit__(None, None, None), 5.0)
            self._conn = None
            conn.abandon()
        if self._lost_at_ns is not None:
            self._record_gap(False, stopped=True)

    def _record_gap(self, resumed: bool, *, stopped: bool = False) -> None:
        """After a loss: nothing was received meanwhile, unless the broker kept a session for us."""
        lost, self._lost_at_ns = self._lost_at_ns, None
        if lost is None or (resumed and self.ctx.settings.session_expiry_s > 0):
            return
        now = now_ns()
        seconds = (now - lost) / 1e9
        why = self._lost_reason + ("; the source stopped before it came back" if stopped else "")
        self.tracker.on_gap()
        data = {"source": self.ctx.name, "lost_at_ns": lost, "restored_at_ns": None if stopped else now,
                "stopped_at_ns": now if stopped else None, "reason": why}  # fmt: skip
        events = [
            Event(
                asset=asset,
                kind=EventKind.GAP,
                ts_ns=lost,
                key=self.ctx.name,
                code="connection_lost",
                message=f"no data from source {self.ctx.name} for {seconds:.1f} s: {why}",
                value=seconds,
                data=data,
            )
            for asset in self.assets
        ]
        self.ctx.log.warning(
            "source %s: gap of %.1f s recorded for %d assets (%s)", self.ctx.name, seconds, len(events), why
        )
        if self._sink is not None and events:
            self._sink.emit_events(events)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
