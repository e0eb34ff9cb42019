"""OPC UA sessions and their supervisor: connect, resolve namespaces, subscribe, reconnect with backoff.

After every (re)connect each monitored item is recreated and checked; failures are listed, gaps recorded.

Why our own supervisor with a fresh ``asyncua.Client`` per attempt instead of ``auto_reconnect=True``:

* asyncua's ``_recreate_subscriptions`` logs and continues when an item cannot be restored, so a node
  that vanished in a server restart would stop reporting while the source looks "connected"
  (gopcua PR #877 fixed the same bug). We create items ourselves and read every result code.
* Namespace indexes can change when a server restarts; asyncua restores items with the *old* numeric
  NodeIds. We re-read the NamespaceArray and re-resolve every ``nsu=`` node id on each connect.
* Reusing one Client after a blackholed network could hang in ``connect`` (asyncua #1660); a fresh
  Client per attempt, with every connect bounded by ``connect_timeout_s``, cannot inherit that state.
* The server certificate is checked against the trust list on every attempt (a server that came back
  with a new certificate is refused, not silently accepted), and the identity is re-applied.
* We need the outage window to record a gap, and one log line per state change (HealthTracker).

The cost: after a pure network blip (server still up) asyncua could re-activate the old session and
republish the queued notifications; we start a new session, so that window is recorded as a gap
instead of being backfilled. Losing data silently is worse than recording a gap that was avoidable.
Loss is detected by the client's watchdog (ServerState read every ``watchdog_interval_s``), by a Bad
subscription status, by a subscription silent past its keep-alive, or by a failed poll read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.node import Node

from connectors.health import HealthTracker
from connectors.opcua.config import NS0_URI, EventSource, Monitoring, NodeRef, OpcUaSettings, OpcUaTag
from connectors.opcua.security import Pki, SecurityError, apply_security
from connectors.opcua.status_map import status_name
from shopfloor.model import Event, EventKind, now_ns
from shopfloor.secrets import SecretError

EVENT_HANDLE_BASE = 1 << 30  # client handles of event items; data items use their tag index
_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_DEADBANDS = {
    "none": ua.DeadbandType.None_,
    "absolute": ua.DeadbandType.Absolute,
    "percent": ua.DeadbandType.Percent,
}
_UNREADABLE = {
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
}
_AUTH = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
}

PublishCallback = Callable[[ua.PublishResult], None]


class _ClosedTransportFilter(logging.Filter):
    """Drop asyncua's traceback for a Publish that failed because the transport closed.

    That is an expected outage, which the supervisor reports once through the HealthTracker; every
    other asyncua record passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionError) and record.getMessage().startswith("Publish iteration"))


_SESSION_LOG = logging.getLogger("asyncua.client.ua_session.UaSession")
if not any(isinstance(f, _ClosedTransportFilter) for f in _SESSION_LOG.filters):
    _SESSION_LOG.addFilter(_ClosedTransportFilter())


@dataclass
class Item:
    """One configured tag and its state in the current session."""

    index: int
    tag: OpcUaTag
    ref: NodeRef
    mon: Monitoring
    text: str  # the node id as written in config (with the namespace URI filled in)
    node: ua.NodeId | None = None
    failed: str = ""  # why it is not delivering in this session ("" = ok)


@dataclass
class EventItem:
    index: int
    source: EventSource
    ref: NodeRef
    select: list[ua.SimpleAttributeOperand] = field(default_factory=list)
    failed: str = ""


class SessionLost(Exception):
    """The session ended (transport, watchdog, subscription or read failure)."""


def classify(exc: BaseException) -> str:
    """A short error kind for health counters."""
    if isinstance(exc, SecurityError):
        return exc.kind
    if isinstance(exc, SecretError):
        return "secret_missing"
    if isinstance(exc, ua.UaStatusCodeError):
        code = getattr(exc, "code", None)
        if code in _AUTH:
            return "auth_refused"
        return status_name(code) if code is not None else "protocol_error"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, OSError | ConnectionError):
        return "network"
    return "protocol_error"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        code = getattr(exc, "code", None)
        name = status_name(code) if code is not None else type(exc).__name__
        return f"{name}: {exc}" if str(exc) and name not in str(exc) else (str(exc) or name)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


class OpcUaSession:
    """One connection: a fresh Client, its subscriptions and poll loops. Never reused after loss."""

    def __init__(self, settings: OpcUaSettings, pki: Pki, log: logging.Logger) -> None:
        self.settings, self.pki, self.log = settings, pki, log
        self.client = Client(
            settings.endpoint,
            timeout=settings.request_timeout_s,
            watchdog_intervall=settings.watchdog_interval_s,
            auto_reconnect=False,
        )
        self.client.name = self.client.description = "Shopfloor OPC UA connector"
        self.client.product_uri = "urn:shopfloor"
        self.client.session_timeout = 60_000  # ms; a dead client's session is freed within a minute
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.namespaces: list[str] = []
        self.subscriptions: dict[float, int] = {}  # publishing interval ms -> subscription id
        self.revised: dict[float, float] = {}
        self._stale_after: dict[int, float] = {}
        self._last_publish: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = False
        self._closed = False

    # -- connect -------------------------------------------------------------------------------
    async def open(self) -> None:
        s = self.settings
        await asyncio.wait_for(apply_security(self.client, s, self.pki, self.log), s.connect_timeout_s)
        self.client.connection_lost_callback = self._on_connection_lost
        self._opened = True
        await asyncio.wait_for(self.client.connect(), s.connect_timeout_s)
        self.namespaces = list(await self.client.get_namespace_array())

    async def _on_connection_lost(self, exc: Exception) -> None:
        self.mark_lost(f"connection lost ({describe_error(exc)})")

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    def resolve(self, ref: NodeRef) -> ua.NodeId:
        """The session's NodeId for a configured node (raises KeyError naming a missing namespace)."""
        uri = ref.uri or NS0_URI
        try:
            ns = self.namespaces.index(uri)
        except ValueError:
            raise KeyError(
                f"namespace {uri!r} is not on the server (it has {len(self.namespaces)})"
            ) from None
        if ref.kind == "i":
            return ua.NodeId(int(ref.identifier), ns, ua.NodeIdType.Numeric)
        if ref.kind == "s":
            return ua.NodeId(ref.identifier, ns, ua.NodeIdType.String)
        if ref.kind == "g":
            import uuid

            return ua.NodeId(uuid.UUID(ref.identifier), ns, ua.NodeIdType.Guid)
        import base64

        return ua.NodeId(base64.b64decode(ref.identifier), ns, ua.NodeIdType.ByteString)

    def resolve_items(self, items: Sequence[Item]) -> None:
        for it in items:
            try:
                it.node, it.failed = self.resolve(it.ref), ""
            except (KeyError, ValueError) as exc:
                it.node, it.failed = None, f"BadNamespaceUnknown: {exc.args[0]}"

    # -- subscriptions ---------------------------------------------------------------------------
    async def _subscription(self, interval_ms: float, callback: PublishCallback) -> int:
        if interval_ms in self.subscriptions:
            return self.subscriptions[interval_ms]
        keepalive = max(3, math.ceil(5000.0 / interval_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=keepalive * 10,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )

        def on_publish(result: ua.PublishResult) -> None:
            self._last_publish[result.SubscriptionId] = time.monotonic()
            for n in result.NotificationMessage.NotificationData or ():
                if isinstance(n, ua.StatusChangeNotification) and not n.Status.is_good():
                    self.mark_lost(f"subscription status {status_name(n.Status.value)}")
                    return
            callback(result)

        res = await self.client.uaclient.create_subscription(params, on_publish)
        sid = res.SubscriptionId
        revised = float(res.RevisedPublishingInterval)
        if abs(revised - interval_ms) > 1e-6:
            self.log.info(
                "publishing interval %.0f ms revised by the server to %.0f ms", interval_ms, revised
            )
        self.subscriptions[interval_ms] = sid
        self.revised[interval_ms] = revised
        self._stale_after[sid] = (
            max(revised, 1.0) * max(int(res.RevisedMaxKeepAliveCount), 1) / 1000 * 1.5 + 2
        )
        self._last_publish[sid] = time.monotonic()
        return sid

    async def subscribe(self, items: Sequence[Item], callback: PublishCallback) -> None:
        """Create monitored items (chunked); set ``item.failed`` from each result code."""
        by_interval: dict[float, list[Item]] = {}
        for it in items:
            if it.node is not None:
                by_interval.setdefault(it.mon.publishing_interval_ms, []).append(it)
        step = self.settings.max_items_per_request
        for interval, group in by_interval.items():
            sid = await self._subscription(interval, callback)
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                params = ua.CreateMonitoredItemsParameters(
                    SubscriptionId=sid,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=[self._request(it) for it in chunk],
                )
                results = await self.client.uaclient.create_monitored_items(params)
                for it, res in zip(chunk, results, strict=True):
                    it.failed = "" if res.StatusCode.is_good() else status_name(res.StatusCode.value)

    @staticmethod
    def _request(it: Item) -> ua.MonitoredItemCreateRequest:
        m = it.mon
        flt = None
        if m.deadband_type != "none" or m.trigger != "status_value":
            flt = ua.DataChangeFilter(
                Trigger=_TRIGGERS[m.trigger],
                DeadbandType=int(_DEADBANDS[m.deadband_type]),
                DeadbandValue=m.deadband_value if m.deadband_type != "none" else 0.0,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=it.node, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=it.index,
                SamplingInterval=m.sampling_interval_ms,
                Filter=flt,
                QueueSize=m.queue_size,
                DiscardOldest=m.discard_oldest,
            ),
        )

    async def subscribe_events(self, items: Sequence[EventItem], callback: PublishCallback) -> None:
        if not items:
            return
        sid = await self._subscription(self.settings.subscription.publishing_interval_ms + 0.001, callback)
        for ev in items:
            try:
                node = self.resolve(ev.ref)
                etype = self.resolve(_ref_of(ev.source.event_type))
                base = etype == ua.NodeId(ua.ObjectIds.BaseEventType)
                flt = await get_filter_from_event_type(
                    [Node(self.client.uaclient.session, etype)], where_clause_generation=not base
                )
            except (KeyError, ua.UaError) as exc:
                ev.failed = f"event type/node not usable: {describe_error(exc)}"
                continue
            ev.select = list(flt.SelectClauses)
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=sid,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.EventNotifier),
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=ua.MonitoringParameters(
                            ClientHandle=EVENT_HANDLE_BASE + ev.index,
                            SamplingInterval=0,
                            Filter=flt,
                            QueueSize=1000,
                            DiscardOldest=True,
                        ),
                    )
                ],
            )
            (res,) = await self.client.uaclient.create_monitored_items(params)
            ev.failed = "" if res.StatusCode.is_good() else status_name(res.StatusCode.value)

    def stale(self) -> str:
        """A reason if a subscription has been silent past its keep-alive, else ''."""
        now = time.monotonic()
        for sid, limit in self._stale_after.items():
            if now - self._last_publish.get(sid, now) > limit:
                return (
                    f"subscription {sid} silent for {now - self._last_publish[sid]:.1f} s (keep-alive missed)"
                )
        return ""

    # -- polling ---------------------------------------------------------------------------------
    async def read(self, nodes: Sequence[ua.NodeId]) -> list[ua.DataValue]:
        out: list[ua.DataValue] = []
        step = self.settings.max_items_per_request
        for start in range(0, len(nodes), step):
            params = ua.ReadParameters(
                MaxAge=0,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                NodesToRead=[
                    ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value)
                    for n in nodes[start : start + step]
                ],
            )
            out += await self.client.uaclient.read(params)
        return out

    async def check_readable(self, items: Sequence[Item]) -> None:
        """Poll mode: one read marks items the server cannot serve as failed (like CreateMonitoredItems)."""
        live = [it for it in items if it.node is not None]
        values = await self.read([it.node for it in live])  # type: ignore[misc]
        for it, dv in zip(live, values, strict=True):
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            it.failed = status_name(code) if code in _UNREADABLE else ""

    def start_polling(
        self, items: Sequence[Item], on_values: Callable[[Sequence[Item], list[ua.DataValue]], None]
    ) -> None:
        by_interval: dict[float, list[Item]] = {}
        for it in items:
            if it.node is not None and not it.failed:
                by_interval.setdefault(it.mon.poll_interval_ms, []).append(it)
        for interval, group in by_interval.items():
            self._tasks.append(asyncio.create_task(self._poll(interval / 1000, group, on_values)))

    async def _poll(
        self,
        period: float,
        items: list[Item],
        on_values: Callable[[Sequence[Item], list[ua.DataValue]], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        nodes = [it.node for it in items]
        due = loop.time()
        while not self.lost.is_set():
            try:
                values = await self.read(nodes)  # type: ignore[arg-type]
            except Exception as exc:  # any failed read ends this session; the supervisor reconnects
                self.mark_lost(f"poll read failed ({describe_error(exc)})")
                return
            on_values(items, values)
            due += period
            now = loop.time()
            if now > due:  # fell behind: skip the missed cycles rather than bunching reads
                due += math.ceil((now - due) / period) * period
            await asyncio.sleep(due - now)

    # -- teardown --------------------------------------------------------------------------------
    async def close(self) -> None:
        """Close politely when the session is up; otherwise just drop the transport (no noisy requests)."""
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if not self._opened:
            return
        c = self.client
        polite = not self.lost.is_set() and c.uaclient.state is UaClientState.CONNECTED
        # Stop the publish loop first: a pending Publish would fail (and be logged) during teardown.
        session = c.uaclient.session
        tasks = [getattr(session, "_publish_task", None)]
        if not polite:
            tasks += [
                getattr(c, name, None)
                for name in ("_renew_channel_task", "_supervisor_task", "_stale_watchdog_task")
            ]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if polite:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.disconnect(), 5)
            return
        with contextlib.suppress(Exception):
            c.disconnect_socket()


def _ref_of(text: str) -> NodeRef:
    from connectors.opcua.config import parse_node_id

    ref = parse_node_id(text)
    return ref if ref.uri else NodeRef(NS0_URI, ref.kind, ref.identifier)


@dataclass
class Callbacks:
    """What the supervisor hands to the connector."""

    on_data: PublishCallback
    on_events: PublishCallback
    on_values: Callable[[Sequence[Item], list[ua.DataValue]], None]
    emit_events: Callable[[list[Event]], None]
    last_source_ts: Callable[[], dict[str, int]]  # asset -> newest source timestamp seen


class Supervisor:
    """Keeps one source connected: connect → set up items → wait for loss → record gap → back off → retry."""

    def __init__(
        self,
        name: str,
        settings: OpcUaSettings,
        items: list[Item],
        events: list[EventItem],
        state_dir: Path,
        tracker: HealthTracker,
        log: logging.Logger,
        callbacks: Callbacks,
    ) -> None:
        self.name, self.settings, self.items, self.event_items = name, settings, items, events
        self.tracker, self.log, self.cb = tracker, log, callbacks
        self.pki = Pki.for_source(settings, name, state_dir)
        self.session: OpcUaSession | None = None
        self.failed: dict[str, str] = {}  # node id -> reason, as last reported
        self.last_restore: dict[str, Any] = {}
        self.sessions = 0
        self.attempts = 0
        self._lost_at_ns: int | None = None
        self._lost_reason = ""
        self._lost_last: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._rng = random.Random()

    @property
    def assets(self) -> list[str]:
        return sorted({it.tag.asset for it in self.items})

    async def run(self) -> None:
        delay = self.settings.reconnect_initial_s
        while not self._stop.is_set():
            session = OpcUaSession(self.settings, self.pki, self.log)
            self.session = session
            self.attempts += 1
            try:
                await self._setup(session)
            except asyncio.CancelledError:
                await session.close()
                raise
            except Exception as exc:  # every failure is classified, counted and retried with backoff
                self.tracker.on_disconnected(classify(exc), describe_error(exc))
                await session.close()
                await self._sleep(delay * self._rng.uniform(0.8, 1.2))
                delay = min(delay * 2, self.settings.reconnect_max_s)
                continue
            delay = self.settings.reconnect_initial_s
            self.sessions += 1
            self.tracker.on_connected()
            self._record_gap()
            self._report_items(first=True)
            await self._watch(session)
            if self._stop.is_set():
                await session.close()
                break
            self._lost_at_ns = now_ns()
            self._lost_last = self.cb.last_source_ts()  # before any value of the next session arrives
            self._lost_reason = session.lost_reason
            self.tracker.on_disconnected("connection_lost", session.lost_reason)
            await session.close()
            await self._sleep(delay * self._rng.uniform(0.8, 1.2))
        self.session = None

    async def _setup(self, session: OpcUaSession) -> None:
        await session.open()
        session.resolve_items(self.items)
        if self.settings.mode == "poll" or any(it.mon.mode == "poll" for it in self.items):
            await session.check_readable([it for it in self.items if it.mon.mode == "poll"])
        await session.subscribe([it for it in self.items if it.mon.mode == "subscribe"], self.cb.on_data)
        await session.subscribe_events(self.event_items, self.cb.on_events)
        session.start_polling([it for it in self.items if it.mon.mode == "poll"], self.cb.on_values)

    async def _watch(self, session: OpcUaSession) -> None:
        """Until the session is lost or we stop; retries failed items every ``item_retry_s``."""
        tick = min(1.0, self.settings.watchdog_interval_s)
        next_retry = time.monotonic() + (self.settings.item_retry_s or math.inf)
        while not (self._stop.is_set() or session.lost.is_set()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.lost.wait(), tick)
            if session.lost.is_set() or self._stop.is_set():
                return
            reason = session.stale()
            if reason:
                session.mark_lost(reason)
                return
            if time.monotonic() >= next_retry:
                next_retry = time.monotonic() + self.settings.item_retry_s
                await self._retry_failed(session)

    async def _retry_failed(self, session: OpcUaSession) -> None:
        failed = [it for it in self.items if it.failed]
        if not failed:
            return
        try:
            session.namespaces = list(await session.client.get_namespace_array())
            session.resolve_items(failed)
            poll = [it for it in failed if it.mon.mode == "poll" and it.node is not None]
            if poll:
                await session.check_readable(poll)
                session.start_polling([it for it in poll if not it.failed], self.cb.on_values)
            await session.subscribe([it for it in failed if it.mon.mode == "subscribe"], self.cb.on_data)
        except Exception as exc:  # a failure here is a lost session, handled by the watch loop
            session.mark_lost(f"retrying failed items failed ({describe_error(exc)})")
            return
        self._report_items(first=False)

    def _report_items(self, *, first: bool) -> None:
        """Log and count the failed items whenever the set changes; never drop one silently."""
        failed = {it.text: it.failed for it in self.items if it.failed}
        failed |= {ev.source.node_id: f"events: {ev.failed}" for ev in self.event_items if ev.failed}
        expected = len(self.items) + len(self.event_items)
        self.last_restore = {
            "at_ns": now_ns(),
            "expected": expected,
            "restored": expected - len(failed),
            "failed": dict(failed),
            "session": self.sessions,
        }
        if first:
            self.log.info(
                "source %s: %d/%d monitored items active (session %d)",
                self.name,
                expected - len(failed),
                expected,
                self.sessions,
            )
        if failed != self.failed:
            gone = sorted(set(self.failed) - set(failed))
            if gone:
                self.log.warning("source %s: items restored: %s", self.name, ", ".join(gone))
            new = {k: v for k, v in failed.items() if self.failed.get(k) != v}
            if new:
                listing = "; ".join(f"{k} ({v})" for k, v in sorted(new.items()))
                self.tracker.on_error("item_failed", f"{len(failed)} of {expected} items failed: {listing}")
                self.log.error(
                    "source %s: %d of %d items not delivering: %s", self.name, len(failed), expected, listing
                )
                self.cb.emit_events(
                    [
                        Event(
                            asset=it.tag.asset,
                            kind=EventKind.SYSTEM,
                            ts_ns=now_ns(),
                            code=it.failed.split(":", 1)[0],
                            message=f"{it.tag.signal}: monitored item {it.text} failed: {it.failed}",
                            data={"source": self.name, "signal": it.tag.signal, "node_id": it.text},
                        )
                        for it in self.items
                        if it.text in new
                    ]
                )
        self.failed = failed

    def _record_gap(self, *, stopped: bool = False) -> None:
        """After a loss, one GAP event per asset: data between loss and restore is unknown, not interpolated.

        When the source stops while disconnected the gap is recorded up to the stop (``restored_at_ns``
        is then None and ``stopped_at_ns`` is set).
        """
        if self._lost_at_ns is None:
            return
        restored, lost = now_ns(), self._lost_at_ns
        if stopped:
            self._lost_reason += "; source stopped before the connection came back"
        last = self._lost_last
        self.tracker.on_gap()
        events = []
        for asset in self.assets:
            events.append(
                Event(
                    asset=asset,
                    kind=EventKind.GAP,
                    ts_ns=last.get(asset, lost),
                    code="connection_lost",
                    message=f"no data from source {self.name} for {(restored - lost) / 1e9:.1f} s: {self._lost_reason}",
                    value=(restored - lost) / 1e9,
                    data={
                        "source": self.name,
                        "lost_at_ns": lost,
                        "restored_at_ns": None if stopped else restored,
                        "stopped_at_ns": restored if stopped else None,
                        "last_source_ts_ns": last.get(asset),
                        "reason": self._lost_reason,
                    },
                )
            )
        self.log.warning(
            "source %s: gap of %.1f s recorded for %d assets (%s)",
            self.name,
            (restored - lost) / 1e9,
            len(events),
            self._lost_reason,
        )
        self.cb.emit_events(events)
        self._lost_at_ns = None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def stop(self) -> None:
        self._stop.set()
        if self.session is not None:
            await self.session.close()
        self._record_gap(stopped=True)
