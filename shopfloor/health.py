"""Per-source health, part of the connector API: state, last good read, rates, errors, gaps, failed items.

The tracker logs transitions (connected → lost → recovered, item failed → restored) once, never every retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum

from shopfloor.model import now_ns


class SourceState(StrEnum):
    """Where a source is in its life: the acquisition supervisor restarts a FAILED one."""

    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"
    FAILED = "failed"  # a task of the connector crashed (a bug), not a device outage


@dataclass(frozen=True)
class SourceHealth:
    source: str
    connected: bool
    state: SourceState
    last_good_ns: int | None  # wall time of the last good read
    last_source_ts_ns: int | None  # newest source timestamp seen
    samples: int
    samples_per_s: float  # over the last rate window
    errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    last_error: str = ""
    gaps: int = 0  # recorded gaps (reconnects after data loss windows)
    failed_items: dict[str, str] = field(default_factory=dict)  # item id -> why it is not delivering

    @property
    def data_age_s(self) -> float | None:
        """Seconds since the last good read (wall clock)."""
        return None if self.last_good_ns is None else (now_ns() - self.last_good_ns) / 1e9


class HealthTracker:
    """Mutable counters a connector updates; ``snapshot()`` gives an immutable SourceHealth."""

    RATE_WINDOW_S = 10.0

    def __init__(self, source: str, log: logging.Logger | None = None) -> None:
        self.source = source
        self.log = log or logging.getLogger("shopfloor.source")
        self.state = SourceState.STARTING
        self.connected = False
        self.last_good_ns: int | None = None
        self.last_source_ts_ns: int | None = None
        self.samples = 0
        self.errors: dict[str, int] = {}
        self.reconnects = 0
        self.gaps = 0
        self.last_error = ""
        self.failed_items: dict[str, str] = {}
        self._rate_t0 = time.monotonic()
        self._rate_n0 = 0
        self._rate = 0.0
        self._ever_connected = False

    def on_connected(self) -> None:
        if not self.connected:
            if self._ever_connected:
                self.reconnects += 1
                self.log.warning("source %s: connection restored", self.source)
            else:
                self.log.info("source %s: connected", self.source)
            self._ever_connected = True
        self.connected = True
        self.state = SourceState.CONNECTED

    def on_disconnected(self, kind: str, message: str) -> None:
        """Count the error; log only when the state changes (no log flood while retrying)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = f"{kind}: {message}"
        if self.connected or self.state == SourceState.STARTING:
            self.log.error(
                "source %s: unavailable (%s: %s); retrying with backoff", self.source, kind, message
            )
        self.connected = False
        self.state = SourceState.DISCONNECTED

    def on_error(self, kind: str, message: str) -> None:
        """A failed read that does not drop the connection (e.g. one Modbus exception)."""
        first = kind not in self.errors
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = f"{kind}: {message}"
        if first:
            self.log.warning("source %s: %s: %s (counted; logged once per kind)", self.source, kind, message)

    def on_item_failed(self, item: str, reason: str) -> None:
        """One item (a node, a tag) stopped delivering while the source stays up; counted as
        ``errors["item_failed"]`` and logged when it fails or its reason changes, not on every check.
        """
        if self.failed_items.get(item) == reason:
            return
        self.failed_items[item] = reason
        self.errors["item_failed"] = self.errors.get("item_failed", 0) + 1
        self.log.error("source %s: item %s not delivering: %s", self.source, item, reason)

    def on_item_restored(self, item: str) -> None:
        """A failed item delivers again; logged once."""
        if self.failed_items.pop(item, None) is not None:
            self.log.warning("source %s: item %s restored", self.source, item)

    def on_samples(self, n: int, newest_source_ts_ns: int | None = None, *, good: int | None = None) -> None:
        """``n`` samples emitted (of any quality), ``good`` of them Good (default: all).

        ``samples`` counts everything emitted; the last good read and the newest source time move
        only with Good data, so a source that sends nothing but Bad values ages as stale.
        """
        self.samples += n
        if (n if good is None else good) > 0:
            self.last_good_ns = now_ns()
            if newest_source_ts_ns is not None:
                self.last_source_ts_ns = max(
                    self.last_source_ts_ns or newest_source_ts_ns, newest_source_ts_ns
                )

    def on_gap(self) -> None:
        self.gaps += 1

    def on_crashed(self, message: str, exc: BaseException | None = None) -> None:
        """A task of the connector died: the source is failed until it is restarted."""
        self.errors["crashed"] = self.errors.get("crashed", 0) + 1
        self.last_error = message
        self.log.error("source %s: %s", self.source, message, exc_info=exc)
        self.connected = False
        self.state = SourceState.FAILED

    def on_stopped(self) -> None:
        self.connected = False
        self.state = SourceState.STOPPED

    def snapshot(self) -> SourceHealth:
        now = time.monotonic()
        if now - self._rate_t0 >= self.RATE_WINDOW_S or self._rate == 0.0:
            dt = now - self._rate_t0
            if dt > 0.5:
                self._rate = (self.samples - self._rate_n0) / dt
                self._rate_t0, self._rate_n0 = now, self.samples
        return SourceHealth(
            source=self.source,
            connected=self.connected,
            state=self.state,
            last_good_ns=self.last_good_ns,
            last_source_ts_ns=self.last_source_ts_ns,
            samples=self.samples,
            samples_per_s=self._rate,
            errors=dict(self.errors),
            reconnects=self.reconnects,
            last_error=self.last_error,
            gaps=self.gaps,
            failed_items=dict(self.failed_items),
        )
