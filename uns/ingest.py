"""The central ingest of the unified namespace: a shared, persistent MQTT 5 subscription whose messages are
decoded, written to the historian in batches and acknowledged to the broker only once the historian has them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import socket
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from historian.base import Store
from historian.errors import StoreRejected, StoreUnavailable
from historian.quarantine import Quarantine
from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.config.ingest import IngestConfig
from shopfloor.model import SYSTEM_SEGMENT, Event, SeriesKey, now_ns
from shopfloor.secrets import read_secret
from uns.json_payload import Decoded, PayloadError, decode_message
from uns.mqtt_session import ManualAckClient, cancel, first, until_lost
from uns.sparkplug import NAMESPACE
from uns.sparkplug_ingest import SparkplugHost
from uns.topics import TopicTree

log = logging.getLogger("shopfloor.uns.ingest")

PUBLISHER_SUFFIX = "/_system/shopfloor/mqtt-publisher"  # the edge publisher's own counters (docs/uns.md)
SPARKPLUG_PREFIX = NAMESPACE + "/"
TREE_SUBSCRIPTION, SPARKPLUG_SUBSCRIPTION = 1, 2  # MQTT 5 subscription identifiers: which one delivered


@dataclass(slots=True)
class Received:
    """One message as it arrived: on which connection, its packet id (for the PUBACK), and what it holds."""

    seq: int  # arrival number in this process
    conn: int  # number of the connection it came on: a PUBACK is only valid on that one
    mid: int
    qos: int
    dup: bool
    topic: str
    payload: bytes
    at_ns: int
    decoded: Decoded | None = None
    error: PayloadError | None = None

    @property
    def points(self) -> int:
        return self.decoded.points if self.decoded is not None else 0


@dataclass
class EdgeStatus:
    """What the centre knows of one edge publisher (by its counters) or one line (by its data): when it was
    first and last heard from."""

    first_ns: int
    last_ns: int
    messages: int = 0
    points: int = 0
    stale: bool = False
    publisher_pending: float | None = None  # the edge publisher's own ``pending`` counter, when seen

    def age_s(self, now: int) -> float:
        return (now - self.last_ns) / 1e9


@dataclass
class IngestStats:
    """Counters of the ingest (messages, except ``written``/``refused``/``pending_points``: points)."""

    received: int = 0  # messages that arrived (a redelivered one counts again)
    acked: int = 0  # PUBACKs sent, each after the historian took the message's batch
    written: int = 0  # points (samples and events) of received messages the historian acknowledged
    quarantined: dict[str, int] = field(default_factory=dict)  # malformed messages, by reason
    refused: int = 0  # points the historian refused (kept in quarantine.jsonl)
    redelivered: int = 0  # messages the broker marked as sent again (DUP)
    unacked: int = 0  # written, but their connection was gone: the broker sends them again
    pending: int = 0  # received, not yet written and acknowledged
    pending_points: int = 0
    batches: int = 0
    retries: int = 0
    connections: int = 0
    connected: bool = False
    historian_online: bool = False
    last_error: str = ""

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


class Ingest:
    """A service (start / stop / status): the broker's messages into ``store``, acknowledged once stored.

    Each QoS 1 message is acknowledged (PUBACK: paho's manual acks, on the client aiomqtt wraps) after the
    historian acknowledged the batch holding it, in arrival order; until then the broker keeps it in this
    client's persistent session (clean start off, a session expiry) and sends it again on the next
    connection, so a killed ingest loses nothing. The historian's writes are idempotent (samples per
    series and timestamp, events per asset, kind, key, timestamp and ``seq``): what comes twice is
    stored once. Malformed messages are quarantined with a counted reason and acknowledged.

    Batches: up to ``batch.max_points`` points or ``batch.max_age_ms`` after the oldest message arrived,
    one store request for the samples and one for the events; then every message of the batch is
    acknowledged in arrival order. While the historian is away nothing is acknowledged and the batch is
    retried on the backoff (probing on a short period); the broker stops sending at the Receive Maximum.
    Above ``max_pending_points`` held points ingest disconnects (the broker keeps the messages for the
    session) and connects again once the historian has taken half of them. A message from a connection
    that has since been lost is still written (a broker that crashed may not have saved it), just not
    acknowledged: it is not that connection's to acknowledge, and the broker sends it again if it kept it.
    """

    name = "mqtt-ingest"

    def __init__(
        self, config: IngestConfig, store: Store, *, health_asset: str | None = None, seed: int | None = None
    ) -> None:
        self.config = config
        self.broker = config.broker_settings()  # ValueError without a URL
        self.url = self.broker.broker
        self.where = f"MQTT broker {self.url.redacted()}"
        self.client_id = config.resolved_client_id()
        self.subscription = config.subscription()
        self.tree = TopicTree(config.topic_prefix)
        self.store = store
        self.health_asset = health_asset
        self.quarantine = Quarantine(config.dir)  # points the historian refused, in the writer's format
        self.malformed_path = config.dir / "malformed.jsonl"
        self.edges: dict[str, EdgeStatus] = {}  # edge publishers, by the edge id of their counters' asset
        self.lines: dict[str, EdgeStatus] = {}  # data age per line (an asset path without its last segment)
        self.sparkplug = (
            SparkplugHost(config.sparkplug_groups, self.client_id, config.dir)
            if config.sparkplug_groups
            else None
        )
        # the Sparkplug STATE timestamp of the current connection (its will and its birth share it)
        self._state_ms = 0
        self._password = read_secret(config.password_env, config.password_file, "ingest password")
        self._tls = config.tls.ssl_context("ingest") if self.url.tls else None
        self._s = IngestStats()
        self._pending: deque[Received] = deque()
        self._batch: list[Received] = []
        self._held_points = 0  # points of pending and in-flight messages
        self._seq = 0
        self._stop_seq: int | None = None
        self._conn: ManualAckClient | None = None
        self._numbers = 0
        rc, rng = config.retry, random.Random(seed)
        self._backoff = Backoff(rc.initial_ms / 1000, rc.max_ms / 1000, rc.multiplier, rng)
        self._reconnect = Backoff(rc.initial_ms / 1000, rc.max_ms / 1000, rc.multiplier, rng)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._over_limit = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._stopping = False
        self._outage = False
        self._opened = False
        self._next_health = 0.0
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- service -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.config.dir.mkdir(parents=True, exist_ok=True)
        self._next_health = asyncio.get_running_loop().time() + self.config.health_interval_s
        for name, coro in (
            ("connect", self._connect_loop()),
            ("run", self._run()),
            ("maintain", self._maintain()),
        ):
            self._tasks[name] = asyncio.create_task(coro, name=f"mqtt-ingest-{name}")
        log.info(
            "ingesting %s from %s as %s into historian %s",
            self.subscription, self.where, self.client_id, getattr(self.store, "name", "?"),
        )  # fmt: skip

    async def stop(self, timeout_s: float | None = None) -> None:
        """Write and acknowledge what has arrived (within ``stop_timeout_s``; not waited for while the
        historian is away), store the final counters, disconnect keeping the session, close the store."""
        if not self._tasks:
            return
        timeout = self.config.stop_timeout_s if timeout_s is None else timeout_s
        self._stopping = True
        self._stop_seq = self._seq
        self._wake.set()
        run = self._tasks["run"]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run), timeout)
        self._stop_now.set()
        await cancel(run)
        if self.health_asset and self._opened and not self._outage:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deliver([], self.health_batch()), min(5.0, max(timeout, 1.0)))
        left = self._s.pending = len(self._pending) + len(self._batch)
        if left:
            log.warning("ingest: %d messages stay unacknowledged; the broker sends them again", left)
        self._disconnect.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tasks["connect"]), 10)
        for task in self._tasks.values():
            await cancel(task)
        self._tasks = {}
        await self.store.close()

    def stats(self) -> IngestStats:
        s = replace(self._s, quarantined=dict(self._s.quarantined))
        s.pending = len(self._pending) + len(self._batch)
        s.pending_points = self._held_points
        s.connected = self._conn is not None
        s.historian_online = self._opened and not self._outage
        return s

    def status(self) -> str | None:
        s, now = self.stats(), now_ns()

        def ages(d: dict[str, EdgeStatus]) -> str:
            return ",".join(
                f"{k}:{'stale' if e.stale else f'{e.age_s(now):.1f}s'}" for k, e in sorted(d.items())
            )

        edges, lines = ages(self.edges), ages(self.lines)
        sparkplug = f" sparkplug={self.sparkplug.status(now)}" if self.sparkplug is not None else ""
        return (
            f"ingest: received={s.received} written={s.written} acked={s.acked} "
            f"quarantined={s.quarantined_total} refused={s.refused} redelivered={s.redelivered} "
            f"pending={s.pending} retries={s.retries} broker={'connected' if s.connected else 'offline'} "
            f"historian={'online' if s.historian_online else 'outage' if self._outage else '-'} "
            f"edges={edges or '-'} lines={lines or '-'}{sparkplug}"
        )

    def health_batch(self) -> SampleBatch:
        """The counters and each edge's data age as signals of ``health_asset`` (like the writer's)."""
        s, now = self.stats(), now_ns()
        values: dict[str, float] = {
            "received": s.received, "acked": s.acked, "written": s.written, "refused": s.refused,
            "quarantined": s.quarantined_total, "redelivered": s.redelivered, "unacked": s.unacked,
            "pending": s.pending, "pending_points": s.pending_points, "retries": s.retries,
            "connections": s.connections, "connected": float(s.connected),
            "historian_online": float(s.historian_online), "edges": len(self.edges), "lines": len(self.lines),
        }  # fmt: skip
        for reason, n in s.quarantined.items():
            values[f"quarantined.{reason}"] = n
        for edge, e in self.edges.items():
            values[f"edge.{edge}.age_s"] = e.age_s(now)
            values[f"edge.{edge}.messages"] = e.messages
            values[f"edge.{edge}.stale"] = float(e.stale)
            if e.publisher_pending is not None:
                values[f"edge.{edge}.pending"] = e.publisher_pending
        for line, e in self.lines.items():
            name = line.replace("/", ".")
            values[f"line.{name}.age_s"] = e.age_s(now)
            values[f"line.{name}.messages"] = e.messages
            values[f"line.{name}.stale"] = float(e.stale)
        if self.sparkplug is not None:
            values.update(self.sparkplug.health_values(now))
        asset = self.health_asset or ""
        keys = [(asset, name) for name in values]
        return SampleBatch.from_columns(keys, range(len(keys)), [now] * len(keys), list(values.values()))

    # -- receiving -----------------------------------------------------------------------------------
    def _received(self, conn: ManualAckClient, message: paho.MQTTMessage) -> None:
        """paho's on_message: decode, hold until written. Never raises (paho would end the loop)."""
        try:
            topic = message._topic.decode("utf-8", errors="replace")  # the broker checks UTF-8; be safe
            rec = Received(self._seq, conn.number, message.mid, message.qos, bool(message.dup), topic,
                           bytes(message.payload), now_ns())  # fmt: skip
            self._seq += 1
            if topic.startswith(SPARKPLUG_PREFIX):
                self._sparkplug(conn, message, rec)
            else:
                try:
                    rec.decoded = decode_message(topic, rec.payload, self.tree)
                except PayloadError as exc:
                    rec.error = exc
            self._pending.append(rec)
            self._held_points += rec.points
            self._s.received += 1
            self._s.redelivered += rec.dup
            if rec.error is None:
                self._seen(rec)
            if self._held_points >= self.config.max_pending_points:
                self._over_limit.set()
            self._wake.set()
        except Exception:  # a bug here must not cost the connection; the message stays unacknowledged
            log.exception("ingest: cannot take a message on %s", message._topic[:200])

    def _sparkplug(self, conn: ManualAckClient, message: paho.MQTTMessage, rec: Received) -> None:
        """A message on a Sparkplug topic: fed to the host if its subscription delivered it; the copy that
        a tree subscription of ``#`` (no topic prefix) also delivers is acknowledged and left alone."""
        ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
        if self.sparkplug is None or SPARKPLUG_SUBSCRIPTION not in ids:
            rec.decoded = Decoded(None, [], [])
            return
        rec.decoded, rec.error, replies = self.sparkplug.feed(rec.topic, rec.payload)
        for r in replies:  # rebirth requests: QoS 0 like the specification's commands, never awaited
            conn.publish_nowait(r.topic, r.payload, r.qos)

    def _seen(self, rec: Received) -> None:
        """Who was heard from: an edge publisher by its counters, a line by its data (only data: an edge
        whose counters still come while its connectors are silent shows its lines going stale)."""
        d = rec.decoded
        if d is None:
            return
        assets = {e.asset for e in d.events}
        if d.samples is not None and len(d.samples):
            assets |= {k.asset for k in d.samples.keys}
        for asset in assets:
            parts = asset.split("/")
            if len(parts) > 1 and parts[1] == SYSTEM_SEGMENT:
                if asset.startswith(parts[0] + PUBLISHER_SUFFIX):
                    edge = parts[4] if len(parts) > 4 else parts[0]  # an older publisher: one per site
                    e = self._heard(self.edges, "edge", edge, rec)
                    keys = list(d.samples.keys) if d.samples is not None else []
                    pending = SeriesKey(asset, "pending")
                    if d.samples is not None and pending in keys:
                        rows = np.flatnonzero(d.samples.series == keys.index(pending))
                        if len(rows):
                            e.publisher_pending = float(d.samples.value[rows[-1]])
                continue
            self._heard(self.lines, "line", asset.rsplit("/", 1)[0], rec)

    @staticmethod
    def _heard(table: dict[str, EdgeStatus], what: str, key: str, rec: Received) -> EdgeStatus:
        e = table.get(key)
        if e is None:
            e = table[key] = EdgeStatus(rec.at_ns, rec.at_ns)
            log.info("%s %s: first seen (%s)", what, key, rec.topic)
        elif e.stale:
            e.stale = False
            log.warning("%s %s: messages again after %.1f s of silence", what, key, e.age_s(rec.at_ns))
        e.last_ns = max(e.last_ns, rec.at_ns)
        e.messages += 1
        e.points += rec.points
        return e

    # -- connection ----------------------------------------------------------------------------------
    def _connection(self) -> ManualAckClient:
        self._numbers += 1
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        cfg = self.config
        will = None
        if self.sparkplug is not None:
            self._state_ms = now_ns() // 1_000_000
            w = self.sparkplug.state(False, self._state_ms)
            will = aiomqtt.Will(w.topic, w.payload, 1, True)
        return ManualAckClient(
            self._numbers, self._received, self.url.host, self.url.port,
            username=self.broker.user, password=self._password, identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props, will=will,
            timeout=cfg.timeout_s, keepalive=cfg.keepalive_s, tls_context=self._tls,
            logger=logging.getLogger("shopfloor.uns.mqtt"),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )  # fmt: skip

    async def _connect_loop(self) -> None:
        failing = False
        while not self._disconnect.is_set():
            if self._held_points >= self.config.max_pending_points:
                self._drained.clear()  # stop reading until the historian has taken half of it
                await first(self._drained.wait(), self._disconnect.wait())
                continue
            conn = self._connection()
            try:
                await conn.__aenter__()
                # a resumed session delivers right after CONNACK, before the subscriptions are answered:
                # those messages are this connection's to acknowledge from here on
                self._conn = conn
                subs = [(self.subscription, TREE_SUBSCRIPTION)]
                if self.sparkplug is not None:
                    subs += [(t, SPARKPLUG_SUBSCRIPTION) for t in self.sparkplug.subscriptions()]
                for topic, ident in subs:
                    props = Properties(PacketTypes.SUBSCRIBE)
                    if self.sparkplug is not None:
                        props.SubscriptionIdentifier = ident
                    # no local: the host's own STATE and rebirth requests never come back to it
                    opts = SubscribeOptions(qos=1, noLocal=ident == SPARKPLUG_SUBSCRIPTION)
                    codes = await conn.subscribe(
                        topic, options=opts, properties=props, timeout=self.config.timeout_s
                    )
                    refused = [c for c in codes if getattr(c, "is_failure", False)]
                    if refused:
                        raise aiomqtt.MqttError(
                            f"the broker refused the subscription to {topic}: {refused[0]}"
                        )
                if self.sparkplug is not None:  # the host is online: its STATE birth, retained
                    st = self.sparkplug.state(True, self._state_ms)
                    await conn.publish(
                        st.topic, st.payload, qos=1, retain=True, timeout=self.config.timeout_s
                    )
            except aiomqtt.MqttError as exc:
                self._conn = None
                conn.abandon()
                if not failing:
                    log.error("ingest: cannot subscribe at %s as %s: %s", self.where, self.client_id, exc)
                failing = True
                self._s.last_error = str(exc)
                await first(asyncio.sleep(self._reconnect.next()), self._disconnect.wait())
                continue
            failing = False
            self._reconnect.reset()
            self._s.connections += 1
            log.info(
                "subscribed to %s at %s as %s (%s session)",
                self.subscription, self.where, self.client_id, "resumed" if conn.session_present else "new",
            )  # fmt: skip
            self._over_limit.clear()
            ended = await self._serve(conn)
            self._conn = None
            if ended == 0:
                log.warning(
                    "ingest: lost the connection to %s; unacknowledged messages come again", self.where
                )
                conn.abandon()
                continue
            if self.sparkplug is not None:  # a clean stop: the host says it is offline (no will then)
                st = self.sparkplug.state(False, self._state_ms)
                with contextlib.suppress(Exception):
                    await conn.publish(st.topic, st.payload, qos=1, retain=True, timeout=5.0)
            # DISCONNECT keeps the session (its expiry was set at CONNECT)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.__aexit__(None, None, None), 5.0)
            conn.abandon()

    async def _serve(self, conn: ManualAckClient) -> int:
        """Until the connection is lost (0) or a stop (2). Above ``max_pending_points`` held points it stops
        reading the socket until the historian has taken half of them: TCP holds the broker back and the
        connection, with everything in flight on it, stays (Mosquitto 2.0 does not keep to the Receive
        Maximum once acknowledgements flow, so the window alone does not bound what arrives). A pause
        longer than about the keep-alive ends the connection; the broker then sends again what was held."""
        lost = asyncio.ensure_future(until_lost(conn))
        try:
            while True:
                ended = await first(asyncio.shield(lost), self._over_limit.wait(), self._disconnect.wait())
                if ended != 1:
                    return ended
                log.warning("ingest: %d points held, not yet stored: reading paused", self._held_points)
                self._drained.clear()
                conn.pause_reading()
                try:
                    ended = await first(self._drained.wait(), asyncio.shield(lost), self._disconnect.wait())
                finally:
                    conn.resume_reading()
                if ended:
                    return 0 if ended == 1 else 2
                self._over_limit.clear()
                log.info("ingest: %d points held: reading again", self._held_points)
        finally:
            await cancel(lost)

    # -- writing -------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        if self._health_due():
            return True
        if not self._pending:
            return False
        if self._stopping:
            return self._stop_seq is not None and self._pending[0].seq < self._stop_seq
        if self._held_points >= self.config.batch.max_points:
            return True
        return now_ns() - self._pending[0].at_ns >= self.config.batch.max_age_ms * 1_000_000

    def _health_due(self) -> bool:
        every = self.config.health_interval_s
        return bool(self.health_asset and every and asyncio.get_running_loop().time() >= self._next_health)

    def _take(self) -> list[Received]:
        batch: list[Received] = []
        points, limit = 0, self.config.batch.max_points
        while self._pending and points < limit and len(batch) < self.config.receive_maximum:
            if self._stopping and (self._stop_seq is None or self._pending[0].seq >= self._stop_seq):
                break
            rec = self._pending.popleft()
            batch.append(rec)
            points += rec.points
        return batch

    async def _run(self) -> None:
        while True:
            while not self._ready():
                if self._stopping:
                    return  # everything that arrived before the stop is written and acknowledged
                timeout = 0.5
                if self._pending:
                    age = (now_ns() - self._pending[0].at_ns) / 1e9
                    timeout = max(0.0, min(timeout, self.config.batch.max_age_ms / 1000 - age))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            health = None
            if self._health_due():
                self._next_health = asyncio.get_running_loop().time() + self.config.health_interval_s
                health = self.health_batch()
            self._batch = self._take()
            if not await self._deliver(self._batch, health):
                return  # stopping while the historian is away: the batch stays unacknowledged
            self._acknowledge(self._batch)
            self._batch = []

    async def _deliver(self, batch: list[Received], health: SampleBatch | None) -> bool:
        """Write the batch's samples and events (and ``health``); True once the historian took them.

        Points it refuses are isolated by halving and quarantined; malformed messages are quarantined
        too, both before the batch is acknowledged."""
        ok = [r.decoded for r in batch if r.decoded is not None]
        samples = SampleBatch.concat([d.samples for d in ok if d.samples is not None])
        events = [e for d in ok for e in d.events]
        seqs = [n for d in ok for n in d.seqs]
        while True:
            try:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
                refused = await self._send(samples, None) if len(samples) else []
                refused += await self._send(events, seqs) if events else []
                own = await self._send(health, None) if health is not None else []
                break
            except Exception as exc:
                if not isinstance(exc, StoreUnavailable):
                    if not self._outage:  # a backend bug: retried like an outage, logged once
                        log.exception("ingest: unexpected error writing to historian")
                    exc = StoreUnavailable(f"{type(exc).__name__}: {exc}")
                if not await self._outage_wait(exc):
                    return False
        if self._outage:
            log.warning("ingest: historian reachable again; writing the %d messages held",
                        len(self._pending) + len(batch))  # fmt: skip
        self._outage = False
        self._backoff.reset()
        n_refused = sum(len(items) for items, _, _ in refused)
        for items, reason, item_seqs in refused + own:
            if isinstance(items, SampleBatch):
                self.quarantine.add_samples(items, reason)
            else:
                self.quarantine.add_events(items, reason, item_seqs)
        if refused or own:
            log.warning("ingest: the historian refused points; quarantined (%s)", (refused + own)[0][1])
        self._quarantine_malformed([r for r in batch if r.error is not None])
        self._s.written += sum(r.points for r in batch) - n_refused
        self._s.refused += n_refused
        self._s.batches += bool(batch)
        return True

    async def _send(self, items: SampleBatch | list[Event], seqs: list[int] | None) -> list[Any]:
        """Send; on a refusal, halve until the refused points are alone: their (items, reason, seqs)."""
        if isinstance(items, SampleBatch):
            payload = self.store.encode_samples(items)
        else:
            payload = self.store.encode_events(items, seqs)
        try:
            await self.store.send(payload)
            return []
        except StoreRejected as exc:
            if len(items) == 1:
                return [(items, str(exc), seqs)]
        mid = len(items) // 2
        if isinstance(items, SampleBatch):
            return await self._send(items.take(slice(0, mid)), None) + await self._send(
                items.take(slice(mid, None)), None
            )
        assert seqs is not None
        return await self._send(items[:mid], seqs[:mid]) + await self._send(items[mid:], seqs[mid:])

    async def _outage_wait(self, exc: StoreUnavailable) -> bool:
        """Wait out the backoff (probing an unanswered store); False when stopping."""
        self._s.retries += 1
        self._s.last_error = str(exc)
        if not self._outage:
            log.error("ingest: historian unavailable (%s); holding %d messages unacknowledged", exc,
                      len(self._pending) + len(self._batch))  # fmt: skip
            self._outage = True
        if self._stopping:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._backoff.next(exc.retry_after_s)
        probe_s = self.config.retry.probe_interval_ms / 1000 if exc.unreachable else 1e9
        while True:
            step = min(probe_s, deadline - loop.time())
            if step > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_now.wait(), step)
            if self._stop_now.is_set():
                return False
            if loop.time() >= deadline or (self._opened and await self.store.ping()):
                return True

    def _acknowledge(self, batch: list[Received]) -> None:
        """PUBACK every message of a written batch, in arrival order, on the connection it came on (after
        saving the Sparkplug births among them: a redelivery after a crash is read with them)."""
        if self.sparkplug is not None:
            self.sparkplug.flush()
        conn = self._conn
        for r in batch:
            if r.qos == 0:
                continue
            if conn is not None and conn.number == r.conn and conn.ack(r.mid, r.qos):
                self._s.acked += 1
            else:
                self._s.unacked += 1
        self._held_points -= sum(r.points for r in batch)
        if self._held_points <= self.config.max_pending_points // 2:
            self._drained.set()

    def _quarantine_malformed(self, bad: list[Received]) -> None:
        if not bad:
            return
        lines = []
        for r in bad:
            assert r.error is not None
            reason = r.error.reason
            self._s.quarantined[reason] = self._s.quarantined.get(reason, 0) + 1
            entry: dict[str, Any] = {"at_ns": r.at_ns, "reason": reason, "detail": r.error.detail[:500],
                                     "topic": r.topic, "bytes": len(r.payload)}  # fmt: skip
            try:
                entry["payload"] = r.payload.decode("utf-8")
            except UnicodeDecodeError:
                entry["payload_b64"] = base64.b64encode(r.payload).decode()
            lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
        log.warning("ingest: quarantined %d malformed messages (first: %s on %s)", len(bad),
                    bad[0].error, bad[0].topic)  # fmt: skip
        self.malformed_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.malformed_path, "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())

    async def _maintain(self) -> None:
        """Mark edges stale, and wake the writer when the counters are due."""
        stale_ns = int(self.config.stale_after_s * 1e9)
        while True:
            await asyncio.sleep(min(1.0, self.config.stale_after_s / 4))
            now = now_ns()
            for what, table in (("edge", self.edges), ("line", self.lines)):
                for key, e in table.items():
                    if not e.stale and now - e.last_ns > stale_ns:
                        e.stale = True
                        log.warning("%s %s: stale, no message for %.1f s", what, key, e.age_s(now))
            if self._health_due():
                self._wake.set()
