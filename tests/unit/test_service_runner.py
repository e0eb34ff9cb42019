"""The service runner: start in order, stop in reverse (producers first, the writer last), status lines,
a failed start undoes what was started, SIGTERM stops in order, a second signal leaves at once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from shopfloor.service import Service, ServiceRunner


class Recorder:
    def __init__(
        self, name: str, log: list[str], *, fail_start: bool = False, slow_stop_s: float = 0
    ) -> None:
        self.name, self.log, self.fail_start, self.slow_stop_s = name, log, fail_start, slow_stop_s
        self.aborted = False

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot bind")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        await asyncio.sleep(self.slow_stop_s)
        self.log.append(f"stopped {self.name}")

    def status(self) -> str | None:
        return f"{self.name}: ok"

    def abort(self) -> None:
        self.aborted = True


def test_services_satisfy_the_protocol() -> None:
    assert isinstance(Recorder("x", []), Service)


async def test_starts_in_order_stops_in_reverse_and_reports_status() -> None:
    log: list[str] = []
    lines: list[str] = []
    services = [Recorder(n, log) for n in ("writer", "bus", "acquisition")]
    runner = ServiceRunner(
        services, status_every_s=0.05, duration_s=0.3, report=lines.append, handle_signals=False
    )
    assert await runner.run() == 0
    assert log == [
        "start writer", "start bus", "start acquisition",
        "stop acquisition", "stopped acquisition", "stop bus", "stopped bus", "stop writer", "stopped writer",
    ]  # fmt: skip
    assert {"writer: ok", "bus: ok", "acquisition: ok"} <= set(lines)


async def test_a_failed_start_stops_what_was_started_and_raises() -> None:
    log: list[str] = []
    services = [Recorder("writer", log), Recorder("bus", log), Recorder("simulator", log, fail_start=True)]
    runner = ServiceRunner(services, handle_signals=False)
    with pytest.raises(RuntimeError, match="simulator cannot bind"):
        await runner.run()
    assert log == ["start writer", "start bus", "stop bus", "stopped bus", "stop writer", "stopped writer"]


async def test_sigterm_stops_in_order() -> None:
    log: list[str] = []
    services = [Recorder("writer", log), Recorder("acquisition", log)]
    runner = ServiceRunner(services, status_every_s=0, report=lambda _: None)
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(runner.run(), 10) == 0
    assert log[-4:] == ["stop acquisition", "stopped acquisition", "stop writer", "stopped writer"]


async def test_a_second_signal_leaves_at_once_and_aborts_the_rest() -> None:
    log: list[str] = []
    lines: list[str] = []
    writer = Recorder("writer", log)
    slow = Recorder("acquisition", log, slow_stop_s=60)  # would hold the stop for a minute
    runner = ServiceRunner([writer, slow], status_every_s=0, report=lines.append)
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
    loop.call_later(0.3, os.kill, os.getpid(), signal.SIGINT)
    assert await asyncio.wait_for(runner.run(), 10) == 130
    assert "stopped acquisition" not in log and "stop writer" not in log
    assert writer.aborted and slow.aborted
    assert (
        any("second Ctrl-C leaves at once" in x for x in lines) and lines[-1] == "second signal: left at once"
    )


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ServiceRunner([Recorder("a", []), Recorder("a", [])])
