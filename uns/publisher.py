"""The northbound MQTT publisher: a sink the HistorianWriter drives like a Store, so every sample and event
reaches the broker through the same spool, batching, backoff and quarantine as the historian.

``encode_*`` turn a batch into messages (a pluggable ``PayloadCodec``: plain JSON, or Sparkplug B in
``uns.sparkplug_edge``); ``send`` publishes them in order on one connection and returns only once the broker has
acknowledged every one; a lost connection or a missing acknowledgement raises ``StoreUnavailable``,
so the writer keeps the batch spooled and sends it again, in order, once the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiomqtt
import paho.mqtt.client as paho

from historian.base import event_seqs
from historian.errors import StoreRejected, StoreUnavailable
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.publish import PublishConfig
from shopfloor.config.schema import HistorianConfig
from shopfloor.model import Event, Signal, system_asset
from shopfloor.secrets import read_secret
from uns.json_payload import JsonCodec
from uns.topics import MqttMessage

log = logging.getLogger("shopfloor.uns")


class PayloadCodec(Protocol):
    """How samples and events become MQTT messages: the topic of each and its payload.

    ``encode_*`` may raise (a name with no topic, a value the format cannot carry): the publisher
    turns that into a refusal, and the writer quarantines just the points that caused it.
    ``on_connect`` gives the messages to publish first on every new connection (Sparkplug B's
    NBIRTH/DBIRTH), ``will`` the broker's last will for the connection (Sparkplug B's NDEATH). Per
    connection attempt ``will`` is called first, then, once connected, ``on_connect``; the births are
    acknowledged before any data of the connection is published.

    ``encode_samples`` may return a function instead of the messages: the publisher calls it inside the
    connection's session, just before publishing (Sparkplug's sequence numbers belong to a session).
    Optional: ``command_topics()`` (subscribed before the births), ``on_command(topic, payload)`` (the
    messages answering one, published in send order) and ``death()`` (published before a clean close).
    """

    format: str

    def encode_samples(self, batch: SampleBatch) -> list[MqttMessage] | Callable[[], list[MqttMessage]]: ...

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int]) -> list[MqttMessage]: ...

    def on_connect(self) -> list[MqttMessage]: ...

    def will(self) -> MqttMessage | None: ...


@dataclass(frozen=True)
class Refused:
    """An encoded payload that cannot be sent: ``send`` raises StoreRejected with the reason."""

    reason: str


class _Connection(aiomqtt.Client):
    """aiomqtt's client (the connection, TLS, paho's socket on the asyncio loop) with publishing of our own:
    ``publish_nowait`` hands a message to paho and counts it unacknowledged until its PUBACK, whose
    reason code is kept (MQTT 5: a broker that refuses a publish, e.g. by an ACL, still acknowledges
    it, with a failure code). CONNACK's Receive Maximum and Maximum Packet Size are kept too. The
    hooks are aiomqtt's own callbacks and its paho client (hence ``aiomqtt<3`` in the dependencies)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # paho's own in-flight limit rescans its whole queue on every PUBACK; ``_publish`` limits instead
        super().__init__(*args, max_inflight_messages=0, **kwargs)
        self.receive_maximum = 65535  # MQTT 5's default when CONNACK names none
        self.maximum_packet = 268_435_455
        self.unacked: set[int] = set()
        self.progress = asyncio.Event()  # set on every acknowledgement
        self.refusals = 0
        self.first_refusal = ""

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        self.receive_maximum = int(getattr(properties, "ReceiveMaximum", 0) or self.receive_maximum)
        self.maximum_packet = int(getattr(properties, "MaximumPacketSize", 0) or self.maximum_packet)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        # paho calls this, on the loop's thread, when the PUBACK (QoS 1) or PUBCOMP (QoS 2) arrives
        if getattr(reason_code, "is_failure", False):
            self.refusals += 1
            self.first_refusal = self.first_refusal or str(reason_code)
        self.unacked.discard(mid)
        self.progress.set()
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def publish_nowait(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue one message on the connection (paho writes them in call order); MqttError if it cannot."""
        info = self._client.publish(topic, payload, qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        self.unacked.add(info.mid)

    def abandon(self) -> None:
        """Close the socket without waiting for the broker (it may be hung): paho sends DISCONNECT
        and closes once it is written."""
        with contextlib.suppress(Exception):
            self._client.disconnect()


class MqttPublisher:
    """The broker as a ``historian.base.Sink``: ``open``, ``encode_samples``, ``encode_events``, ``send``,
    ``ping``, ``close``. One connection (MQTT 5, clean start), made on first use and again after a loss.

    Does ``await aiomqtt.Client.publish(..., qos=1)`` return only after the PUBACK? Yes: aiomqtt waits
    for paho's ``on_publish``, which paho calls for QoS 1 when the PUBACK arrives (QoS 2: PUBCOMP;
    QoS 0: once written to the socket, which is why QoS 0 is refused in the config). We track the
    PUBACKs ourselves all the same (``_Connection``), because aiomqtt's publish (2.5) ignores the
    PUBACK's reason code (a refusal would count as delivered), is not woken by a lost connection
    (it waits out its timeout) and costs O(pending publishes) per call (2,000 messages/s here).

    Order: the messages of a send are handed to paho in list order, paho writes them in that order
    on one TCP connection, and the writer starts the next send only after this one returned, so per
    topic the broker receives batches in spool order; after a failure the writer resends from the
    first unacknowledged batch, so a consumer may see a message again, never one out of order first.
    """

    def __init__(self, config: PublishConfig, *, site: str, codec: PayloadCodec | None = None) -> None:
        self.config = config
        self.broker = config.broker
        self.name = f"MQTT broker {self.broker.redacted()}"
        self.client_id = config.resolved_client_id(site)
        self.codec: PayloadCodec = codec or JsonCodec(config.topic_prefix)
        self._password = read_secret(config.password_env, config.password_file, "publish password")
        self._tls = self.config.tls.ssl_context("publish") if self.broker.tls else None
        self._conn: _Connection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one connection attempt at a time
        self._sending = asyncio.Lock()  # one session's messages in order: data, births, command replies
        self._commands: list[tuple[_Connection, str, bytes]] = []
        self._answering: asyncio.Task[None] | None = None
        self.connections = 0  # successful connects
        self.messages = 0  # messages acknowledged by the broker

    # -- Sink ------------------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._sending:
            await self._connect()

    async def close(self) -> None:
        death = getattr(self.codec, "death", None)
        conn = self._conn
        if death is not None and conn is not None and self._watch is not None and not self._watch.done():
            async with self._sending:
                msg = death()
                if msg is not None:  # Sparkplug: say so before a clean disconnect (the broker drops the will)
                    with contextlib.suppress(StoreUnavailable, StoreRejected):
                        await self._publish(conn, [msg])
        if self._answering is not None:
            self._answering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._answering
        await self._drop(graceful=True)

    def encode_samples(
        self, batch: SampleBatch
    ) -> list[MqttMessage] | Callable[[], list[MqttMessage]] | Refused:
        try:
            return self.codec.encode_samples(batch)
        except Exception as exc:  # any reason: the writer isolates and quarantines the culprits
            return Refused(f"{type(exc).__name__}: {exc}")

    def encode_events(
        self, events: Sequence[Event], seqs: Sequence[int] | None = None
    ) -> list[MqttMessage] | Refused:
        try:
            return self.codec.encode_events(events, event_seqs(events) if seqs is None else list(seqs))
        except Exception as exc:
            return Refused(f"{type(exc).__name__}: {exc}")

    async def send(self, payload: list[MqttMessage] | Callable[[], list[MqttMessage]] | Refused) -> None:
        """Publish every message, in order; return once the broker acknowledged them all."""
        if isinstance(payload, Refused):
            raise StoreRejected(payload.reason)
        if not payload:
            return
        async with self._sending:
            conn = await self._connect()
            try:
                await self._answer(conn)  # a rebirth asked for goes before the data
                if callable(payload):
                    try:
                        payload = payload()
                    except Exception as exc:  # the codec refused (a value it cannot carry): quarantined
                        raise StoreRejected(f"{type(exc).__name__}: {exc}") from None
                    if not payload:
                        return
                await self._publish(conn, payload)
            except StoreUnavailable:
                await self._drop()
                raise

    async def ping(self) -> bool:
        """True when a connection is up or can be made now (it is kept for the next send)."""
        if self._conn is not None and self._watch is not None and not self._watch.done():
            return True
        try:
            async with self._sending:
                await self._connect()
        except StoreUnavailable:
            return False
        return True

    # -- connection --------------------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        async with self._lock:
            if self._conn is not None and self._watch is not None and not self._watch.done():
                return self._conn
            await self._drop()
            will = self.codec.will()
            cfg = self.config
            conn = _Connection(
                self.broker.host,
                self.broker.port,
                username=cfg.user,
                password=self._password,
                identifier=self.client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                will=aiomqtt.Will(will.topic, will.payload, cfg.qos, False) if will else None,
                timeout=cfg.timeout_s,
                keepalive=cfg.keepalive_s,
                tls_context=self._tls,
                logger=logging.getLogger("shopfloor.uns.mqtt"),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
            try:
                await conn.__aenter__()
            except aiomqtt.MqttError as exc:
                conn.abandon()
                # a broker that answered with a refusal (bad credentials, not authorised) is not probed
                # on the short period; one that did not answer at all is
                answered = isinstance(exc, aiomqtt.MqttCodeError)
                raise StoreUnavailable(
                    f"cannot connect to {self.name}: {exc}", unreachable=not answered
                ) from None
            commands = getattr(self.codec, "command_topics", None)
            try:
                for topic in commands() if commands is not None else ():
                    codes = await conn.subscribe(topic, qos=1, timeout=cfg.timeout_s)
                    if any(getattr(c, "is_failure", False) for c in codes):
                        # publishing still works; only the host's rebirth requests would go unheard
                        log.warning("%s refused the subscription to %s: %s", self.name, topic, codes[0])
            except aiomqtt.MqttError as exc:
                conn.abandon()
                raise StoreUnavailable(
                    f"{self.name}: cannot subscribe to commands: {exc}", unreachable=True
                ) from None
            self._conn = conn
            self._commands = []
            self._watch = asyncio.create_task(self._watch_connection(conn), name="mqtt-publisher-connection")
            self.connections += 1
            if self.connections > 1:
                log.info("connected to %s again as %s", self.name, self.client_id)
            else:
                log.info("connected to %s as %s", self.name, self.client_id)
        births = self.codec.on_connect()
        if births:
            try:
                await self._publish(conn, births)
            except StoreUnavailable:
                await self._drop()
                raise
        return conn

    async def _watch_connection(self, conn: _Connection) -> None:
        """Ends when the connection does (aiomqtt's message iterator raises once it is lost); takes the
        commands the codec subscribed to and has them answered in send order."""
        with contextlib.suppress(aiomqtt.MqttError):
            async for msg in conn.messages:
                if getattr(self.codec, "on_command", None) is None:
                    continue
                self._commands.append((conn, str(msg.topic), bytes(msg.payload)))
                if self._answering is None or self._answering.done():
                    self._answering = asyncio.create_task(
                        self._answer_soon(conn), name="mqtt-publisher-command"
                    )

    async def _answer_soon(self, conn: _Connection) -> None:
        """Answer commands now, not at the next batch (a host waiting for a rebirth may be waiting long)."""
        async with self._sending:
            if conn is self._conn:
                try:
                    await self._answer(conn)
                except StoreUnavailable as exc:
                    log.warning("%s: cannot answer a command: %s", self.name, exc)
                    await self._drop()

    async def _answer(self, conn: _Connection) -> None:
        """Publish the replies to the commands received on ``conn`` (inside ``_sending``)."""
        on_command = getattr(self.codec, "on_command", None)
        if on_command is None or not self._commands:
            return
        todo, self._commands = self._commands, []
        replies: list[MqttMessage] = []
        for c, topic, payload in todo:
            if c is not conn:
                continue  # a new connection is born anyway
            try:
                got = on_command(topic, payload)
            except Exception as exc:  # a malformed command must not stop the data
                log.warning("%s: ignoring a command on %s: %s", self.name, topic, exc)
                continue
            if got:
                log.info("%s: answering a command on %s (%d messages)", self.name, topic, len(got))
            replies += got
        if replies:
            await self._publish(conn, replies)

    async def _drop(self, graceful: bool = False) -> None:
        conn, watch, self._conn, self._watch = self._conn, self._watch, None, None
        if conn is None:
            return
        if graceful and watch is not None and not watch.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.__aexit__(None, None, None), min(self.config.timeout_s, 5.0))
        conn.abandon()
        if watch is not None:
            # let the watcher see the end (it takes the connection's final error, so asyncio does not
            # report it as never retrieved); paho closes the socket once its DISCONNECT is written
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(watch), 1.0)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch

    async def _publish(self, conn: _Connection, messages: Sequence[MqttMessage]) -> None:
        """Publish in order, at most ``max_inflight`` (or the broker's Receive Maximum) unacknowledged at
        a time, and wait for every acknowledgement; StoreUnavailable on any failure, StoreRejected for a
        message larger than the broker takes (the writer halves the batch until it fits)."""
        qos, timeout = self.config.qos, self.config.timeout_s
        watch = self._watch
        assert watch is not None
        too_big = max(len(m.payload) + len(m.topic.encode()) for m in messages) + 16 > conn.maximum_packet
        if too_big:
            raise StoreRejected(f"a message is larger than the {conn.maximum_packet} bytes {self.name} takes")
        limit = max(1, min(self.config.max_inflight, conn.receive_maximum, 65000))  # packet ids are 16-bit
        n, i = len(messages), 0
        while True:
            try:
                while i < n and len(conn.unacked) < limit:
                    conn.publish_nowait(messages[i].topic, messages[i].payload, qos)
                    i += 1
            except aiomqtt.MqttError as exc:
                raise StoreUnavailable(f"{self.name}: publish failed: {exc}", unreachable=True) from None
            self._check_refusals(conn, n)
            if i == n and not conn.unacked:
                break
            conn.progress.clear()
            acked = asyncio.ensure_future(conn.progress.wait())
            try:
                done, _ = await asyncio.wait(
                    [acked, watch], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                acked.cancel()
            self._check_refusals(conn, n)  # a broker may refuse, then drop the connection (Mosquitto 2.0)
            if acked not in done:
                lost = watch in done
                what = "the connection was lost" if lost else f"no acknowledgement within {timeout:g} s"
                raise StoreUnavailable(f"{self.name}: {what}", unreachable=True)
        self.messages += n

    def _check_refusals(self, conn: _Connection, n: int) -> None:
        if conn.refusals:
            r, first = conn.refusals, conn.first_refusal
            conn.refusals, conn.first_refusal = 0, ""
            # e.g. "Not authorized" (an ACL) or "Quota exceeded": the batch is not delivered, so it
            # stays in the spool and is sent again after the backoff
            raise StoreUnavailable(f"{self.name} refused {r} of {n} messages: {first}")


def writer_config(config: PublishConfig) -> HistorianConfig:
    """The writer settings of a ``publish:`` section (the writer takes them in a HistorianConfig)."""
    return HistorianConfig(
        batch=config.batch,
        spool=config.spool,
        retry=config.retry,
        timeout_s=config.timeout_s,
        health_interval_s=config.health_interval_s,
        stop_timeout_s=config.stop_timeout_s,
    )


class PublishWriter(HistorianWriter):
    """The writer that delivers to the broker: a HistorianWriter with its own spool, name and status line."""

    name = "mqtt-publisher"
    role = "publisher"

    def status(self) -> str | None:
        s = self.stats()
        return (
            f"mqtt: produced={s.produced} published={s.written} pending={s.pending} "
            f"spooled={s.spooled} replayed={s.replayed} dropped={s.dropped_total} "
            f"quarantined={s.quarantined} state={s.state}"
        )


def codec_for(config: PublishConfig, site: str, devices: Sequence[Any] = ()) -> PayloadCodec:
    """The codec ``config.format`` names; Sparkplug's declares ``devices`` (``uns.sparkplug.DeviceSpec``) at
    birth and keeps its bdSeq and aliases in the spool directory."""
    if config.format == "sparkplug":
        from uns.sparkplug import EdgeConfig
        from uns.sparkplug_edge import SparkplugCodec

        sp = config.sparkplug
        # the messages go out at the publisher's QoS; the node's own qos field is not used
        edge = EdgeConfig(sp.group_id or site, config.edge_id(site), 1, sp.max_metrics_per_message)
        return SparkplugCodec(edge, topic_prefix=config.topic_prefix, devices=devices,
                              state_dir=Path(config.spool.dir))  # fmt: skip
    return JsonCodec(config.topic_prefix)


def publish_writer(
    config: PublishConfig, site: str, codec: PayloadCodec | None = None, *, devices: Sequence[Any] = ()
) -> PublishWriter:
    """The publisher and its writer, its counters published as
    ``<site>/_system/shopfloor/mqtt-publisher/<edge id>`` (one asset per edge process, so the edges of
    one site do not write over each other's counters)."""
    health = system_asset(site, "shopfloor", "mqtt-publisher", config.edge_id(site))
    if config.format == "sparkplug":  # its own counters are born with the rest, not by a rebirth later
        from uns.sparkplug import DeviceSpec

        own = DeviceSpec(health, tuple(Signal(n) for n in PublishWriter.health_signals()))
        devices = [*devices, own]
    return PublishWriter(
        MqttPublisher(config, site=site, codec=codec or codec_for(config, site, devices)),
        writer_config(config),
        health_asset=health,
    )
