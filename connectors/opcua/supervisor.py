"""The reconnect supervisor of an OPC UA source: connect, set up items, watch for loss, record gaps, back off.
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
  Waits between attempts come from the project's one backoff (``shopfloor.backoff.Backoff``).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua

from connectors.opcua.config import OpcUaSettings
from connectors.opcua.errors import classify, describe_error
from connectors.opcua.items import EventItem, Item
from connectors.opcua.security import Pki
from connectors.opcua.session import OpcUaSession
from connectors.opcua.subscriptions import PublishCallback
from shopfloor.backoff import Backoff
from shopfloor.health import HealthTracker
from shopfloor.model import Event, EventKind, now_ns


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
        # the project's one backoff: doubling from reconnect_initial_s to reconnect_max_s, equal jitter
        self.backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s, rng=self._rng)

    @property
    def assets(self) -> list[str]:
        return sorted({it.tag.asset for it in self.items})

    async def run(self) -> None:
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
                await self._sleep(self.backoff.next())
                continue
            self.backoff.reset()
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
            await self._sleep(self.backoff.next())
        self.session = None

    async def _setup(self, session: OpcUaSession) -> None:
        await session.open()
        session.resolve_items(self.items)
        if self.settings.mode == "poll" or any(it.mon.mode == "poll" for it in self.items):
            await session.check_readable([it for it in self.items if it.mon.mode == "poll"])
        await session.subscriptions.subscribe(
            [it for it in self.items if it.mon.mode == "subscribe"], self.cb.on_data
        )
        await session.subscriptions.subscribe_events(self.event_items, self.cb.on_events)
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
            reason = session.subscriptions.stale()
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
            await session.subscriptions.subscribe(
                [it for it in failed if it.mon.mode == "subscribe"], self.cb.on_data
            )
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
            for k in sorted(set(self.failed) - set(failed)):
                self.tracker.on_item_restored(k)  # logged once by the tracker
            new = {k: v for k, v in failed.items() if self.failed.get(k) != v}
            for k, v in sorted(new.items()):
                self.tracker.on_item_failed(k, v)  # health().failed_items; counted and logged once
            if new:
                self.cb.emit_events(
                    [
                        Event(
                            asset=it.tag.asset,
                            kind=EventKind.SYSTEM,
                            ts_ns=now_ns(),
                            key=it.tag.signal,
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
                    key=self.name,
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
