"""Benchmark: the Modbus connector end to end into a real influxd, beside a bare pymodbus loop.

Prints (a) samples/s through our connector + historian writer vs a bare pymodbus read loop of the same
tags and requests, (b) value-change -> historian-ack latency p50/p99, (c) 10,000 tags: lag, CPU, RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymodbus.client import AsyncModbusTcpClient

from connectors.modbus.config import ModbusSettings, ModbusTag
from connectors.modbus.connector import ModbusConnector
from connectors.modbus.read_plan import Item, plan_reads
from historian.influx_v1 import InfluxV1Store
from historian.writer import HistorianWriter
from plant_simulator.clock import SimClock
from plant_simulator.config_gen import plant_config
from plant_simulator.modbus_server import SimModbusServer
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.plant import default_plant
from plant_simulator.register_map import build_register_map
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.connector import SourceContext
from shopfloor.model import Event, SeriesKey
from shopfloor.testing.servers import InfluxDB1Server, free_port

ROOT = Path(__file__).resolve().parents[1]
PATTERN_SERVER = (
    "import asyncio, sys\n"
    "from plant_simulator.faults import MalformedModbusServer\n"
    "async def main():\n"
    "    s = MalformedModbusServer(modes=['ok'], port=int(sys.argv[1]))\n"
    "    await s.start()\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s} s")


def start_server(kind: str, port: int) -> subprocess.Popen[bytes]:
    """The Modbus server in a process of its own, so its CPU is not charged to the client loops."""
    if kind == "plant":
        cmd = [
            sys.executable,
            "-m",
            "plant_simulator",
            "--opcua-port",
            "0",
            "--modbus-port",
            str(port),
            "--quiet",
        ]
    else:
        cmd = [sys.executable, "-c", PATTERN_SERVER, str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
    except BaseException:
        stop_proc(proc)
        raise
    return proc


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def plant_tags(port: int) -> list[dict[str, Any]]:
    src = next(
        s
        for s in plant_config(default_plant(seed=1), modbus_port=port)["sources"]
        if s["connector"] == "modbus"
    )
    return [dict(t) for t in src["tags"]]


def pattern_tags(n: int, units: int = 10) -> list[dict[str, Any]]:
    """``n`` tags over ``units`` unit ids: half float32 (CDAB), half uint16 in the input registers."""
    tags = []
    per_unit = max(1, n // units)
    for k in range(n):
        u, i = divmod(k, per_unit)
        asset = f"bench/area/line-{u % units}/plc-{u}"
        if i % 2 == 0:
            tags.append(
                dict(
                    asset=asset,
                    signal=f"f{i}",
                    unit_id=u % 247 + 1,
                    table="holding",
                    address=i,
                    type="float32",
                    word_order="little",
                    scale=0.5,
                )
            )
        else:
            tags.append(
                dict(
                    asset=asset, signal=f"u{i}", unit_id=u % 247 + 1, table="input", address=i, type="uint16"
                )
            )
    return tags


def historian_config(tmp: Path, url: str) -> HistorianConfig:
    return HistorianConfig.model_validate(
        {
            "url": url,
            "spool": {"dir": str(tmp), "max_bytes": 4 << 30, "segment_bytes": 64 << 20},
            "health_interval_s": 0,
        }
    )


class WriterSink:
    """What the acquisition service wires up: the source's sink publishes onto the live-stream bus,
    whose first (lossless) subscriber is the historian writer."""

    def __init__(self, writer: HistorianWriter) -> None:
        self.writer = writer
        self.bus = Bus()
        self.bus.attach("historian", writer.submit, writer.submit_events)
        self.samples = 0

    def emit(self, batch: SampleBatch) -> None:
        self.samples += len(batch)
        self.bus.publish(batch)

    def emit_events(self, events: list[Event]) -> None:
        self.bus.publish_events(events)


def make_connector(port: int, tags: list[dict[str, Any]], interval: str) -> ModbusConnector:
    settings = ModbusSettings(host="127.0.0.1", port=port, timeout_s=3.0, groups={"default": interval})  # type: ignore[arg-type]
    return ModbusConnector(SourceContext("bench", settings, [ModbusTag.model_validate(t) for t in tags]))


# -- (a) throughput --------------------------------------------------------------------------------
async def bare_loop(
    port: int,
    tags: list[dict[str, Any]],
    seconds: float,
    convert: bool,
    writer: HistorianWriter | None = None,
) -> float:
    """A bare pymodbus loop over the same merged requests; ``convert``: decode each tag as users do;
    ``writer``: also hand each poll to the historian writer (returns samples acknowledged per second).
    """
    parsed = [ModbusTag.model_validate(t) for t in tags]
    keys = [(t.asset, t.signal) for t in parsed]
    reqs = plan_reads([Item(t.unit_id, t.table, t.address, t.words) for t in parsed])
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    dt_of = {
        "float32": client.DATATYPE.FLOAT32,
        "uint16": client.DATATYPE.UINT16,
        "int16": client.DATATYPE.INT16,
        "uint32": client.DATATYPE.UINT32,
    }
    read = {"holding": client.read_holding_registers, "input": client.read_input_registers}
    n = 0
    values = [0.0] * len(parsed)
    stamps = [0] * len(parsed)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            for r in reqs:
                rr = await read[r.table](r.address, count=r.count, device_id=r.unit_id)
                assert not rr.isError()
                ts = time.time_ns()
                if convert:
                    regs = rr.registers
                    for i, off in r.items:
                        t = parsed[i]
                        v = client.convert_from_registers(
                            regs[off : off + t.words], dt_of[t.type], t.word_order
                        )
                        values[i] = v * t.scale + t.offset  # type: ignore[operator]
                        stamps[i] = ts
                n += len(r.items)
            if writer is not None:
                writer.submit(SampleBatch.from_columns(keys, range(len(keys)), stamps, values))
        if writer is not None:
            assert await writer.flush(300)
            return writer.stats().written / (time.perf_counter() - t0)
        return n / (time.perf_counter() - t0)
    finally:
        client.close()


async def through_connector(
    port: int, tags: list[dict[str, Any]], url: str, spool: Path, seconds: float
) -> tuple[float, float, dict[str, Any]]:
    """Samples/s emitted by the connector, and samples/s acknowledged by influxd (incl. the final flush)."""
    writer = HistorianWriter(InfluxV1Store(parse_url(url), timeout_s=60), historian_config(spool, url))
    await writer.start()
    sink = WriterSink(writer)
    c = make_connector(port, tags, "1ms")  # back to back: as fast as the device answers
    t0 = time.perf_counter()
    await c.start(sink)
    await asyncio.sleep(seconds)
    await c.stop()
    t_emit = time.perf_counter() - t0
    assert await writer.flush(300)
    t_ack = time.perf_counter() - t0
    s = writer.stats()
    await writer.stop()
    assert s.written == sink.samples and s.balanced, s
    return sink.samples / t_emit, s.written / t_ack, c.describe()


class NullSink:
    def __init__(self) -> None:
        self.samples = 0

    def emit(self, batch: SampleBatch) -> None:
        self.samples += len(batch)

    def emit_events(self, events: list[Event]) -> None:
        pass


async def connector_alone(port: int, tags: list[dict[str, Any]], seconds: float) -> float:
    sink = NullSink()
    c = make_connector(port, tags, "1ms")
    t0 = time.perf_counter()
    await c.start(sink)
    await asyncio.sleep(seconds)
    await c.stop()
    return sink.samples / (time.perf_counter() - t0)


# -- (b) latency -----------------------------------------------------------------------------------
class LatencyProbe(WriterSink):
    """Notes when a changed marker value is handed over, and when the store has acknowledged it."""

    def __init__(self, writer: HistorianWriter, key: SeriesKey) -> None:
        super().__init__(writer)
        self.key = key
        self.expect: int | None = None
        self.changed_at = 0.0
        self.waiting: list[tuple[float, int]] = []  # (change time, produced count including it)

    def emit(self, batch: SampleBatch) -> None:
        super().emit(batch)
        if self.expect is None or self.key not in batch.keys:
            return
        rows = np.nonzero(batch.series == batch.keys.index(self.key))[0]
        if len(rows) and batch.value[rows[-1]] == self.expect:
            self.waiting.append((self.changed_at, self.writer.stats().produced))
            self.expect = None


async def latency(url: str, spool: Path, changes: int, interval: str) -> list[float]:
    plant = default_plant(seed=1)
    maps = build_register_map({p: plant.signals(p) for p in plant.assets})
    srv = SimModbusServer(maps, "127.0.0.1", free_port())
    await srv.start()
    writer = HistorianWriter(InfluxV1Store(parse_url(url), timeout_s=60), historian_config(spool, url))
    await writer.start()
    try:
        await Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv]).publish_step(100)
        tags = plant_tags(srv.port)
        m = maps[0]
        hb = m.entry("holding", "_heartbeat")
        tags.append(
            dict(asset=m.asset, signal="heartbeat", unit_id=m.unit_id, table="holding", address=hb.address)
        )
        probe = LatencyProbe(writer, SeriesKey(m.asset, "heartbeat"))
        c = make_connector(srv.port, tags, interval)
        await c.start(probe)
        out: list[float] = []
        rng = random.Random(7)
        try:
            await asyncio.sleep(0.5)
            for k in range(changes):
                marker = 1000 + k
                probe.expect, probe.changed_at = marker, time.perf_counter()
                srv.snap[m.unit_id].hr[hb.address] = marker  # the value changes in the simulator
                deadline = time.perf_counter() + 10
                while time.perf_counter() < deadline:
                    if probe.waiting and writer.stats().written >= probe.waiting[0][1]:
                        t_change, _ = probe.waiting.pop(0)
                        out.append(time.perf_counter() - t_change)
                        break
                    await asyncio.sleep(0.002)
                await asyncio.sleep(rng.uniform(0.0, 0.15))  # change at a random phase of the poll
        finally:
            await c.stop()
        return out
    finally:
        await writer.stop()
        await srv.stop()


# -- (c) scale -------------------------------------------------------------------------------------
def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def scale(port: int, n_tags: int, url: str, spool: Path, seconds: float) -> None:
    tags = pattern_tags(n_tags)
    writer = HistorianWriter(InfluxV1Store(parse_url(url), timeout_s=60), historian_config(spool, url))
    await writer.start()
    sink = WriterSink(writer)
    c = make_connector(port, tags, "1s")
    cpu0, t0 = time.process_time(), time.perf_counter()
    await c.start(sink)
    max_pending = 0
    while time.perf_counter() - t0 < seconds:
        await asyncio.sleep(0.25)
        max_pending = max(max_pending, writer.stats().pending)
    await c.stop()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    flushed = await writer.flush(120)
    s = writer.stats()
    await writer.stop()
    d = c.describe()["groups"]["default"]
    h = c.health()
    print(
        f"(c) {n_tags:,} tags at 1 s: {d['requests_per_poll']} requests/poll, {d['polls']} polls in {wall:.1f} s, "
        f"mean poll {d['mean_poll_ms']:.0f} ms, overruns {d['overruns']}, samples {h.samples:,} "
        f"({h.samples / wall:,.0f}/s), written {s.written:,} (all flushed: {flushed}), "
        f"writer backlog max {max_pending:,} points"
    )
    print(
        f"    CPU {100 * cpu / wall:.0f}% of one core (this process: connector + writer), "
        f"RSS {rss_mib():.0f} MiB now, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


async def run(points_hint: int | None = None, seconds: float = 5.0) -> None:
    """Run all three parts; ``points_hint`` is the tag count of the scale test (default 10,000)."""
    n_scale = points_hint or 10_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        influx = InfluxDB1Server(tmp / "influxd")
        influx.start()
        try:
            for kind, label in (("plant", "default plant"), ("pattern", f"{n_scale:,} tags")):
                port = free_port()
                proc = start_server(kind, port)
                try:
                    tags = plant_tags(port) if kind == "plant" else pattern_tags(n_scale)
                    if kind == "plant":
                        for t in tags:
                            t.pop("status_address")  # the bare loop reads values only; so do we here
                    reads_only = await bare_loop(port, tags, seconds, convert=False)
                    with_convert = await bare_loop(port, tags, seconds, convert=True)
                    url = f"influxdb-v1+{influx.base_url}/bench_bare_{kind}"
                    w = HistorianWriter(
                        InfluxV1Store(parse_url(url), timeout_s=60), historian_config(tmp / f"sb-{kind}", url)
                    )
                    await w.start()
                    try:
                        bare_e2e = await bare_loop(port, tags, seconds, convert=True, writer=w)
                    finally:
                        await w.stop()
                    alone = await connector_alone(port, tags, seconds)
                    url = f"influxdb-v1+{influx.base_url}/bench_{kind}"
                    emitted, acked, desc = await through_connector(
                        port, tags, url, tmp / f"spool-{kind}", seconds
                    )
                    g = desc["groups"]["default"]
                    print(
                        f"(a) {label} ({len(tags)} tags, {g['requests_per_poll']} requests/poll, server in its own process)"
                    )
                    print(f"    bare pymodbus loop, reads only              {reads_only:>12,.0f} samples/s")
                    print(f"    bare pymodbus loop + convert_from_registers {with_convert:>12,.0f} samples/s")
                    print(
                        f"    ours, connector alone (null sink)           {alone:>12,.0f} samples/s   "
                        f"ratio {alone / reads_only:.2f}x bare reads-only"
                    )
                    print(
                        f"    bare loop + convert -> writer -> influxd    {bare_e2e:>12,.0f} samples/s acknowledged"
                    )
                    print(
                        f"    ours, emitted by the connector              {emitted:>12,.0f} samples/s (writer attached)"
                    )
                    print(
                        f"    ours -> writer -> influxd (end to end)      {acked:>12,.0f} samples/s acknowledged   "
                        f"ratio {acked / bare_e2e:.2f}x bare end to end, {acked / reads_only:.2f}x bare reads-only"
                    )
                    if kind == "pattern":
                        await scale(
                            port,
                            n_scale,
                            f"influxdb-v1+{influx.base_url}/bench_scale",
                            tmp / "spool-scale",
                            max(10.0, 2 * seconds),
                        )
                finally:
                    stop_proc(proc)
            url = f"influxdb-v1+{influx.base_url}/bench_latency"
            lat = await latency(url, tmp / "spool-latency", 60, "100ms")
            a = np.array(lat) * 1000
            print(
                f"(b) change -> historian ack, {len(a)} changes, poll 100 ms, default writer batching "
                f"(max_age 200 ms): p50 {np.percentile(a, 50):.0f} ms, p99 {np.percentile(a, 99):.0f} ms, "
                f"max {a.max():.0f} ms"
            )
        finally:
            influx.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tags", type=int, default=10_000, help="tags in the scale test")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    args = ap.parse_args()
    print(f"pid {os.getpid()}, {os.cpu_count()} CPUs")
    asyncio.run(run(args.tags, args.seconds))


if __name__ == "__main__":
    main()
