"""The service protocol (start / stop / health / status) and the runner every long-running command uses.

The runner owns signals, periodic status lines and the shutdown order: services stop in the reverse
of their start order, so producers stop first, then the bus drains, then the writer flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("shopfloor.service")


@runtime_checkable
class Service(Protocol):
    """A part that runs until stopped: the writer, the bus, acquisition, the simulator, the MES …

    ``start`` returns once the service is running (its work goes on in its own tasks); ``stop``
    returns once it has finished what it promised to finish (drained, flushed) or its own bounded
    wait ran out. ``status`` gives one human line (or None) for the periodic report.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> str | None: ...


class ServiceRunner:
    """Start services in order, report their status, and stop them in reverse on a signal.

    A first SIGINT/SIGTERM (or ``duration_s``, or ``request_stop()``) begins an orderly stop. A second
    one leaves at once: each remaining service's optional ``abort()`` is called (it must only say
    what it leaves behind; nothing durable may depend on it) and ``run`` returns 130.
    """

    def __init__(
        self,
        services: Sequence[Service],
        *,
        status_every_s: float = 10.0,
        report: Callable[[str], None] | None = None,
        duration_s: float = 0.0,
        handle_signals: bool = True,
    ) -> None:
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique, got {names}")
        self.services = list(services)
        self.status_every_s = status_every_s
        self.report = report or (lambda line: log.info("%s", line))
        self.duration_s = duration_s
        self.handle_signals = handle_signals
        self.started: list[Service] = []
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()
        self._signals = 0

    # -- control -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin the orderly stop (as a first Ctrl-C does)."""
        self._stop.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.report(f"{signal.Signals(signum).name}: stopping (a second Ctrl-C leaves at once)")
            self._stop.set()
        else:
            self._abort.set()

    # -- running -------------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped; 0 after an orderly stop, 130 when a second signal cut it short."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        try:
            await self.start_all()
            await self._wait_for_stop()
            return await self.stop_all()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def start_all(self) -> None:
        """Start in order; if one fails, stop those already started (in reverse) and re-raise."""
        for svc in self.services:
            if self._stop.is_set():
                break
            try:
                await svc.start()
            except BaseException:
                await self.stop_all()
                raise
            self.started.append(svc)

    async def _wait_for_stop(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        # no status lines (status_every_s 0): nothing to wake for but the duration; a deadline in the past
        # here made this loop spin, starving every other service on the event loop
        next_report = began + self.status_every_s if self.status_every_s > 0 else math.inf
        while not self._stop.is_set():
            deadline = next_report
            if self.duration_s:
                deadline = min(deadline, began + self.duration_s)
            timeout = None if deadline == math.inf else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout)
            now = loop.time()
            if self.duration_s and now - began >= self.duration_s:
                break
            if self.status_every_s > 0 and now >= next_report and not self._stop.is_set():
                next_report = now + self.status_every_s
                self.report_status()

    def report_status(self) -> None:
        for svc in self.started:
            try:
                line = svc.status()
            except Exception as exc:  # a status bug must not stop the plant
                line = f"{svc.name}: status unavailable ({type(exc).__name__}: {exc})"
            for part in (line or "").splitlines():
                self.report(part)

    async def stop_all(self) -> int:
        """Stop every started service in reverse order; a second signal cuts it short (returns 130)."""
        stopping = asyncio.ensure_future(self._stop_in_order())
        aborter = asyncio.ensure_future(self._abort.wait())
        try:
            await asyncio.wait([stopping, aborter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborter.cancel()
        if stopping.done():
            stopping.result()
            return 0
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await stopping
        for svc in reversed(self.started):
            abort: Any = getattr(svc, "abort", None)
            if callable(abort):
                with contextlib.suppress(Exception):
                    abort()
        self.started.clear()
        self.report("second signal: left at once")
        return 130

    async def _stop_in_order(self) -> None:
        while self.started:
            svc = self.started[-1]
            try:
                await svc.stop()
            except Exception:  # one service failing to stop must not keep the others running
                log.exception("service %s failed to stop cleanly", svc.name)
            self.started.pop()
