"""OpcUaConnector: data changes of one publish cycle become one SampleBatch; events become Events.

Samples carry the source timestamp; status codes become quality; polling reads as fallback. A value
without a usable source timestamp (missing, or at/before 1970) is stored Bad (``BadInvalidTimestamp``)
at the server timestamp, and a ``BadWaitingForInitialData`` placeholder is stored as NaN, Bad: neither
can become Good data unless a ``status_overrides`` entry says so for the timestamp case.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from asyncua import ua

from connectors.opcua.config import OpcUaSettings, OpcUaTag, check_groups, parse_node_id
from connectors.opcua.items import EVENT_HANDLE_BASE, EventItem, Item
from connectors.opcua.status_map import override_table, qualities
from connectors.opcua.supervisor import Callbacks, Supervisor
from shopfloor.batch import SampleBatch
from shopfloor.connector import Connector, ConnectorSpec, Sink, SourceContext
from shopfloor.model import ASSET_PATH_RE, Event, EventKind, Quality, SeriesKey, SignalType, now_ns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_BAD_TYPE = ua.StatusCodes.BadTypeMismatch
_BAD_TIME = ua.StatusCodes.BadInvalidTimestamp
_WAITING = ua.StatusCodes.BadWaitingForInitialData
_NAN = math.nan


def ts_ns(dt: datetime) -> int:
    """UTC nanoseconds of an asyncua DateTime (aware UTC; naive treated as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


class OpcUaConnector(Connector[OpcUaSettings, OpcUaTag]):
    """Reads an OPC UA server by subscription (default) or polling into the sink, and keeps it connected."""

    spec = ConnectorSpec(
        name="opcua",
        settings_model=OpcUaSettings,
        tag_model=OpcUaTag,
        description="OPC UA client (asyncua): subscriptions or polling, events, security, auto-reconnect",
        check=check_groups,
    )

    def __init__(self, ctx: SourceContext[OpcUaSettings, OpcUaTag]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        self.items = [
            Item(i, tag, ref, s.monitoring(tag), ref.text())
            for i, tag in enumerate(ctx.tags)
            for ref in (tag.ref(s.namespace_uri),)
        ]
        self.event_items = []
        for j, src in enumerate(s.events):
            ref = parse_node_id(src.node_id)
            if ref.uri is None and s.namespace_uri:
                ref = type(ref)(s.namespace_uri, ref.kind, ref.identifier)
            self.event_items.append(EventItem(j, src, ref))
        self._keys = tuple(SeriesKey(t.asset, t.signal) for t in ctx.tags)
        self._assets = sorted({t.asset for t in ctx.tags})
        asset_index = {a: i for i, a in enumerate(self._assets)}
        self._asset_of_series = np.array([asset_index[t.asset] for t in ctx.tags], dtype=np.int64)
        self._last_ts = np.full(len(ctx.tags), -1, dtype=np.int64)
        self._overrides = override_table(s.status_overrides)
        # Text signals (an alarm text, a recipe name) keep the server's string; others must be numbers.
        self._is_text = [
            (sig := ctx.signals.get((t.asset, t.signal))) is not None and sig.type == SignalType.TEXT
            for t in ctx.tags
        ]
        self._has_text = any(self._is_text)
        self._sink: Sink | None = None
        self._task: asyncio.Task[None] | None = None
        self.supervisor = Supervisor(
            ctx.name,
            s,
            self.items,
            self.event_items,
            ctx.source_dir(),
            self.tracker,
            ctx.log,
            Callbacks(
                self._on_data, self._on_events, self._on_values, self._emit_events, self._last_by_asset
            ),
        )
        self.events_received = 0
        self.batches = 0

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        if self._task is not None:
            return
        self._sink = sink
        self._task = self.spawn(self.supervisor.run(), f"opcua:{self.ctx.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.supervisor._stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(task), 3)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.supervisor.stop()
        self.tracker.on_stopped()

    def describe(self) -> dict[str, Any]:
        sup = self.supervisor
        sess = sup.session
        return {
            "endpoint": self.ctx.settings.endpoint,
            "security": f"{self.ctx.settings.security_policy}/{self.ctx.settings.security_mode}",
            "identity": self.ctx.settings.identity,
            "items": len(self.items),
            "failed_items": dict(sup.failed),
            "last_restore": dict(sup.last_restore),
            "sessions": sup.sessions,
            "connect_attempts": sup.attempts,
            "subscriptions": dict(sess.subscriptions.revised) if sess else {},
            "batches": self.batches,
            "events_received": self.events_received,
            "client_certificate": str(sup.pki.cert),
            "trust_dir": str(sup.pki.trust_dir),
        }

    @property
    def failed_items(self) -> dict[str, str]:
        """node id -> reason for every item that is not delivering right now."""
        return dict(self.supervisor.failed)

    # -- data path -------------------------------------------------------------------------------
    def _on_data(self, result: ua.PublishResult) -> None:
        """One publish response → one SampleBatch (every data change in it, in server order)."""
        handles: list[int] = []
        stamps: list[int] = []
        values: list[float | str] = []
        codes: list[int] = []
        cache: dict[datetime, int] = {}
        for notif in result.NotificationMessage.NotificationData or ():
            if not isinstance(notif, ua.DataChangeNotification):
                continue
            for mi in notif.MonitoredItems:
                self._row(mi.ClientHandle, mi.Value, cache, handles, stamps, values, codes)
        self._emit(handles, stamps, values, codes)

    def _on_values(self, items: Sequence[Item], dvs: list[ua.DataValue]) -> None:
        handles: list[int] = []
        stamps: list[int] = []
        values: list[float | str] = []
        codes: list[int] = []
        cache: dict[datetime, int] = {}
        for it, dv in zip(items, dvs, strict=True):
            self._row(it.index, dv, cache, handles, stamps, values, codes)
        self._emit(handles, stamps, values, codes)

    def _row(
        self,
        handle: int,
        dv: ua.DataValue | None,
        cache: dict[datetime, int],
        handles: list[int],
        stamps: list[int],
        values: list[float | str],
        codes: list[int],
    ) -> None:
        if handle >= len(self._keys) or dv is None:
            return
        st = dv.StatusCode
        code = st.value if st is not None else 0
        stamp = -1
        t = dv.SourceTimestamp
        if t is not None:
            stamp = cache.get(t, -1)
            if stamp < 0:
                stamp = cache[t] = ts_ns(t)
        if stamp <= 0:  # no usable source timestamp: when the value was measured is unknown
            if code < 0x80000000:
                code = _BAD_TIME
            t = dv.ServerTimestamp
            stamp = ts_ns(t) if t is not None else 0
            if stamp <= 0:
                stamp = now_ns()
        var = dv.Value
        v = var.Value if var is not None else None
        value: float | str
        if v is None or code == _WAITING:  # a placeholder is not a measurement, whatever it holds
            value = _NAN
        elif self._has_text and self._is_text[handle] and not isinstance(v, list | tuple | bytes):
            value = v.Text or "" if isinstance(v, ua.LocalizedText) else v if isinstance(v, str) else str(v)
        else:
            try:
                value = float(v)
            except (TypeError, ValueError):
                value = _NAN
                if code < 0x80000000:
                    code = _BAD_TYPE
                hint = (
                    "; the server sends text: declare the signal with `type: text` to store it as text"
                    if isinstance(v, str | ua.LocalizedText)
                    else " (arrays and structures are not stored: map each element to a signal of its own)"
                )
                self.tracker.on_error(
                    "unsupported_type", f"{self.items[handle].text}: {type(v).__name__}{hint}"
                )
        handles.append(handle)
        stamps.append(stamp)
        values.append(value)
        codes.append(code)

    def _emit(
        self, handles: list[int], stamps: list[int], values: list[float | str], codes: list[int]
    ) -> None:
        if not handles or self._sink is None:
            return
        series = np.array(handles, dtype=np.uint32)
        ts = np.array(stamps, dtype=np.int64)
        text = None
        if self._has_text and any(isinstance(v, str) for v in values):
            text = np.empty(len(values), dtype=object)
            text[:] = [v if isinstance(v, str) else None for v in values]
            values = [_NAN if isinstance(v, str) else v for v in values]
        quality = qualities(np.array(codes, dtype=np.uint32), self._overrides)
        batch = SampleBatch(self._keys, series, ts, np.array(values, dtype=np.float64), quality, text)
        self._last_ts[series] = np.maximum(self._last_ts[series], ts)
        self.batches += 1
        good = int(np.count_nonzero(quality == Quality.GOOD))
        self.tracker.on_samples(len(batch), int(ts.max()), good=good)
        self._sink.emit(batch)

    def _last_by_asset(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for asset_idx, ts in zip(self._asset_of_series.tolist(), self._last_ts.tolist(), strict=True):
            if ts >= 0:
                asset = self._assets[asset_idx]
                out[asset] = max(out.get(asset, ts), ts)
        return out

    # -- events ----------------------------------------------------------------------------------
    def _on_events(self, result: ua.PublishResult) -> None:
        from asyncua.common.events import Event as UaEvent

        out: list[Event] = []
        for notif in result.NotificationMessage.NotificationData or ():
            if not isinstance(notif, ua.EventNotificationList):
                continue
            for fields in notif.Events:
                j = fields.ClientHandle - EVENT_HANDLE_BASE
                if not 0 <= j < len(self.event_items):
                    continue
                item = self.event_items[j]
                try:
                    ev = UaEvent.from_event_fields(item.select, fields.EventFields)
                except (IndexError, AttributeError) as exc:
                    self.tracker.on_error("event_decode", str(exc))
                    continue
                out.append(self._event(item, ev))
        self.events_received += len(out)
        self._emit_events(out)

    def _event(self, item: EventItem, ev: Any) -> Event:
        src = item.source
        severity = int(getattr(ev, "Severity", 0) or 0)
        msg = getattr(ev, "Message", None)
        text = getattr(msg, "Text", None) or (str(msg) if msg is not None else "")
        when = getattr(ev, "Time", None) or getattr(ev, "ReceiveTime", None)
        source_node = getattr(ev, "SourceNode", None)
        asset = src.asset
        if asset is None:
            ident = getattr(source_node, "Identifier", None)
            name = getattr(ev, "SourceName", None)
            asset = next(
                (c for c in (ident, name) if isinstance(c, str) and ASSET_PATH_RE.match(c)),
                self._assets[0] if self._assets else f"{self.ctx.name}/events",
            )
        kind = EventKind(src.kind) if severity >= src.alarm_severity else EventKind.SYSTEM
        etype = getattr(ev, "EventType", None)
        event_id = getattr(ev, "EventId", None)
        code = "" if etype is None else etype.to_string()
        return Event(
            asset=asset,
            kind=kind,
            ts_ns=ts_ns(when) if isinstance(when, datetime) else now_ns(),
            key=code or self.ctx.name,  # the OPC UA event type: a bounded set per source
            code=code,
            message=text,
            value=float(severity),
            data={
                "source": self.ctx.name,
                "severity": severity,
                "source_name": getattr(ev, "SourceName", None),
                "event_id": event_id.hex() if isinstance(event_id, bytes) else None,
            },
        )

    def _emit_events(self, events: list[Event]) -> None:
        if events and self._sink is not None:
            self._sink.emit_events(events)
