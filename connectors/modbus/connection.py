"""The connection of one Modbus TCP source: its pymodbus client, the connect loop (kernel Backoff), hang detection.
Owns connection loss (every tag Bad once per outage, requests on the dead link woken) and the gap recorded on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from connectors.modbus.config import ModbusSettings
from connectors.modbus.frames import ReadFailure, check_mbap, install_strict_decoding, sent_ids
from connectors.modbus.output import Output
from connectors.modbus.poll_plan import BAD
from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.health import HealthTracker
from shopfloor.model import Event, EventKind, SeriesKey, now_ns

T = TypeVar("T")


class ModbusConnection:
    """Keeps one Modbus TCP device connected: connect → wait for loss → back off → connect again.

    The source counts as connected once the device answers on a new connection (see ``_trace_packet``),
    not when TCP connects: a hung peer (or its kernel's listen backlog) accepts connections too.

    While it waits out a backoff step it probes the port with a bare TCP connect every
    ``probe_interval_s``. Only a port seen closed (refused, or no answer) and then open again ends the
    wait early: that is a device coming back. A port that stays open (a peer that accepts and then drops
    or ignores us, a frozen process whose kernel still accepts) never does, so there the backoff governs.
    """

    HUNG_AFTER = 2  # requests in a row without any byte back that mean a hung peer, not one lost frame

    def __init__(
        self,
        name: str,
        settings: ModbusSettings,
        tracker: HealthTracker,
        output: Output,
        keys: Sequence[SeriesKey],
        assets: Sequence[str],
        log: logging.Logger,
    ) -> None:
        self.name, self.settings, self.tracker, self.output = name, settings, tracker, output
        self.log = log
        self.keys = tuple(keys)  # every numeric series of the source, for the once-per-outage Bad batch
        self.assets = list(assets)  # one gap event per asset
        self.client: AsyncModbusTcpClient | None = None
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self.backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s)
        self.connect_attempts = 0
        self.probes = 0  # bare TCP connects while waiting to reconnect
        self.probes_refused = 0  # ... that found the port closed (refused or unanswered)
        self.early_attempts = 0  # reconnects a probe brought forward (the port was closed, then open)
        self._port_closed = False  # seen closed since the last real connect attempt
        self._lost = asyncio.Event()
        self._lost_at_ns: int | None = None
        self._lost_reason = ""
        self._bad_marked = False
        self._sent: tuple[int, int] = (0, 0)  # (transaction id, unit id) of the last request sent
        self._unanswered = 0  # requests in a row that got no byte back (reset by anything received)
        self._answered = False  # the peer has sent something on the current connection
        self._inflight: set[asyncio.Timeout] = set()  # requests to wake when the link dies
        self._lost_message = ""

    # -- life cycle ------------------------------------------------------------------------------
    def open(self) -> AsyncModbusTcpClient:
        s = self.settings
        self.stopping.clear()
        self.client = AsyncModbusTcpClient(
            s.host,
            port=s.port,
            name=f"shopfloor-{self.name}",
            reconnect_delay=0,  # reconnecting is ours: jittered, capped, reset only after good data
            reconnect_delay_max=0,
            timeout=s.timeout_s,
            retries=s.retries,
            trace_packet=self._trace_packet,
            trace_connect=self._trace_connect,
        )
        install_strict_decoding(self.client)
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.connected.clear()

    async def sleep(self, seconds: float) -> None:
        """Sleep, or less if the source is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def wait_connected(self) -> None:
        """Until the connection is up or the source is stopping."""
        await _first(self.connected, self.stopping)

    # -- the connect loop --------------------------------------------------------------------------
    async def run(self) -> None:
        s = self.settings
        assert self.client is not None
        while not self.stopping.is_set():
            if not self.connected.is_set():
                self.connect_attempts += 1
                ok = await self.client.connect()
                if self.stopping.is_set():
                    break
                if ok and self.client.connected:
                    # TCP is up, but a hung peer (or its kernel's listen backlog) accepts too: the source
                    # counts as connected once the device answers (see _trace_packet), not before.
                    self._lost.clear()
                    self._unanswered = 0
                    self._answered = False
                    self._port_closed = False
                    self.connected.set()
                else:
                    self.tracker.on_disconnected("connect", f"cannot connect to {s.host}:{s.port}")
                    self._mark_all_bad(now_ns())
                    self._port_closed = True
                    await self._wait_to_retry(self.backoff.next())
                    continue
            await _first(self._lost, self.stopping)
            if self.stopping.is_set():
                break
            await self._wait_to_retry(self.backoff.next())  # a peer that accepts then drops must not spin us

    async def _wait_to_retry(self, delay: float) -> None:
        """Wait ``delay`` (a backoff step), probing the port meanwhile; return early once it reopens."""
        period = self.settings.probe_interval_s
        if period <= 0:
            await self.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        due = loop.time() + period
        while not self.stopping.is_set():
            if due >= deadline:
                await self.sleep(deadline - loop.time())
                return
            await self.sleep(due - loop.time())
            if self.stopping.is_set():
                return
            due += period
            if not await self._probe(min(period, self.settings.timeout_s)):
                self.probes_refused += 1
                self._port_closed = True
            elif self._port_closed:  # closed, now open: the device is back
                self.early_attempts += 1
                return

    async def _probe(self, timeout: float) -> bool:
        """One bare TCP connect, closed at once: does the port accept connections?"""
        self.probes += 1
        s = self.settings
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(asyncio.Protocol, s.host, s.port), timeout
            )
        except (OSError, TimeoutError):
            return False
        transport.close()
        return True

    # -- requests --------------------------------------------------------------------------------
    async def call(self, send: Callable[[], Awaitable[T]]) -> T:
        """Await one pymodbus request; if the link dies meanwhile, raise ConnectionException at once.

        pymodbus leaves a request on a closed link waiting for its answer until timeout x retries; the
        ``asyncio.timeout`` armed here (never expiring by itself) is fired by ``lost`` instead.
        """
        waker = asyncio.timeout(None)
        try:
            async with waker:
                self._inflight.add(waker)
                try:
                    return await send()
                finally:
                    self._inflight.discard(waker)
        except TimeoutError:
            if waker.expired():
                raise ConnectionException(self._lost_message or "connection lost") from None
            raise

    async def read(self, pdu: ModbusPDU, where: str) -> ModbusPDU:
        """Send one read PDU and return the answer, or raise ReadFailure (kind connection/timeout/malformed)."""
        client = self.client
        assert client is not None
        if not self.connected.is_set():
            raise ReadFailure("connection", "not connected")
        try:
            # execute() with a prebuilt PDU is how pymodbus sends custom/reused requests (its custom-message
            # example); the read_* helpers would build a new request object for every read.
            return await self.call(lambda: client.execute(False, pdu))
        except ConnectionException as exc:
            raise ReadFailure("connection", str(exc)) from None
        except ModbusIOException as exc:
            if not client.connected:
                raise ReadFailure("connection", str(exc)) from None
            raise ReadFailure(
                "timeout", f"{where}: no valid answer within {self.settings.timeout_s:g} s"
            ) from None
        except ModbusException as exc:
            raise ReadFailure("malformed", f"{where}: {exc}") from None

    # -- loss --------------------------------------------------------------------------------------
    def lost(self, kind: str, message: str) -> None:
        """The connection is gone (seen by a read, the transport or hang detection): mark, wake, reconnect."""
        if not self.connected.is_set():
            return
        self.connected.clear()
        ts = now_ns()
        self._lost_at_ns = ts
        self._lost_message = message
        self._lost_reason = f"{kind}: {message}"
        self.tracker.on_disconnected(kind, message)
        self._mark_all_bad(ts)
        # wake a request waiting for its answer on the dead link now, not after timeout x retries
        now = asyncio.get_running_loop().time()
        for waker in list(self._inflight):
            if waker.when() is None:  # not woken yet
                waker.reschedule(now)
        self._lost.set()

    def no_answer(self) -> bool:
        """Count a request that got nothing back; after ``HUNG_AFTER`` in a row the peer is hung:
        drop the connection (its socket may stay open for ever) and reconnect with backoff.
        """
        self._unanswered += 1
        if self._unanswered < self.HUNG_AFTER:
            return False
        s = self.settings
        self.lost(
            "no_response",
            f"{s.host}:{s.port} answered none of the last {self._unanswered} requests "
            f"({s.retries + 1} x {s.timeout_s:g} s each); the connection is open but the device is not answering",
        )
        if self.client is not None:
            self.client.close()
        return True

    def data_resumed(self, first_good_ns: int) -> None:
        """A poll read good data: the backoff starts over and an outage before it is recorded as a gap."""
        self.backoff.reset()
        self._bad_marked = False
        if self._lost_at_ns is not None:
            self._record_gap(self._lost_at_ns, first_good_ns)

    def _mark_all_bad(self, ts: int) -> None:
        """Once per outage: every tag Bad (NaN), so nobody mistakes the last value for a live one."""
        if self._bad_marked or self.output.sink is None or not self.keys:
            return
        self._bad_marked = True
        n = len(self.keys)
        self.output.samples(
            SampleBatch(
                self.keys,
                np.arange(n, dtype=np.uint32),
                np.full(n, ts, dtype=np.int64),
                np.full(n, np.nan),
                np.full(n, BAD, dtype=np.uint8),
            )
        )

    def _record_gap(self, from_ns: int, to_ns: int) -> None:
        """One GAP event per asset (key: the source) and one warning: data between loss and resume is unknown."""
        self._lost_at_ns = None
        self.tracker.on_gap()
        seconds = (to_ns - from_ns) / 1e9
        reason = self._lost_reason
        msg = f"source {self.name}: no data from the device for {seconds:.1f} s ({reason})"
        data = {"source": self.name, "from_ns": from_ns, "to_ns": to_ns, "reason": reason}
        events = [
            Event(a, EventKind.GAP, to_ns, code="modbus_reconnect", message=msg, data=data, key=self.name)
            for a in self.assets
        ]
        self.log.warning(
            "source %s: gap of %.1f s recorded for %d assets (%s)", self.name, seconds, len(events), reason
        )
        self.output.events(events)

    # -- pymodbus trace hooks (public client parameters) ------------------------------------------
    def _trace_connect(self, up: bool) -> None:
        if not up and not self.stopping.is_set():
            s = self.settings
            self.lost("connection_lost", f"{s.host}:{s.port} closed the connection")

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """Counts frames pymodbus skips silently (their request then times out)."""
        if sending:
            sent = sent_ids(data)
            if sent is not None:
                self._sent = sent
            return data
        self._unanswered = 0
        if not self._answered and self.connected.is_set():
            self._answered = True
            self.tracker.on_connected()
        check_mbap(data, self._sent, self.tracker.on_error)
        return data


async def _first(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
