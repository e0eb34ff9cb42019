"""Benchmark: OPC UA acquisition through our connector into influxd vs a bare asyncua subscription.

Prints samples/s and client CPU per sample for both (same tags, same run), change→historian-ack latency
p50/p99, and 10,000 monitored items on one process (lag, CPU, RSS). Run: .venv/bin/python benchmarks/acquisition_opcua.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Client, Server, ua

from connectors.opcua.config import OpcUaSettings, OpcUaTag
from connectors.opcua.connector import OpcUaConnector
from historian.influx_v1 import InfluxV1Store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.historian_url import parse_url
from shopfloor.config.schema import HistorianConfig
from shopfloor.connector import SourceContext
from shopfloor.model import Event
from shopfloor.testing.servers import InfluxDB1Server, free_port

URI = "urn:shopfloor:plant-simulator"
PROBE = "bench/probe_ms"
WINDOW_S = 8.0


# -- server side (a child process, so the client's CPU is measured alone) -------------------------
async def serve_plant(port: int, tick: float) -> None:
    """The simulator's OPC UA server with the default plant, stepping as fast as ``tick`` allows."""
    from plant_simulator.clock import SimClock
    from plant_simulator.online import OnlinePlant, Publisher
    from plant_simulator.opcua_server import SimOpcUaServer
    from plant_simulator.plant import default_plant

    plant = default_plant(seed=1)
    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", port)
    await srv.start()
    probe = await srv.server.nodes.objects.add_variable(ua.NodeId(PROBE, srv.ns), "probe_ms", 0.0)
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1.0), [srv])
    print("ready", flush=True)
    step = 0
    while True:
        step += 1
        await pub.publish_step(step % 3600)
        await srv.server.write_attribute_value(
            probe.nodeid, ua.DataValue(ua.Variant(time.time() * 1000.0), SourceTimestamp=datetime.now(UTC))
        )
        await asyncio.sleep(tick)


async def serve_many(port: int, n: int, period: float) -> None:
    """A bare asyncua server with ``n`` Double variables, all updated every ``period`` seconds."""
    srv = Server()
    await srv.init()
    srv.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await srv.register_namespace(URI)
    folder = await srv.nodes.objects.add_folder(ua.NodeId("bench", ns), "bench")
    nodes = [await folder.add_variable(ua.NodeId(f"bench/v{i}", ns), f"v{i}", 0.0) for i in range(n)]
    await srv.start()
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        for i, node in enumerate(nodes):
            await srv.write_attribute_value(
                node.nodeid, ua.DataValue(ua.Variant(float(k + i)), SourceTimestamp=now, ServerTimestamp=now)
            )
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - t0)))


def start_server(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"benchmark server did not start: {line!r}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- client side ----------------------------------------------------------------------------------
def plant_tags() -> list[OpcUaTag]:
    from plant_simulator.opcua_server import node_id_string
    from plant_simulator.plant import default_plant

    plant = default_plant(seed=1)
    tags = [
        OpcUaTag(asset=a, signal=s.name, node_id=f"nsu={URI};s={node_id_string(a, s.name)}")
        for a in plant.assets
        for s in plant.signals(a)
    ]
    return [*tags, OpcUaTag(asset="bench/probe", signal="probe_ms", node_id=f"nsu={URI};s={PROBE}")]


def settings(endpoint: str, **kw: Any) -> OpcUaSettings:
    return OpcUaSettings.model_validate(
        {"endpoint": endpoint, "namespace_uri": URI, "security_policy": "None", "security_mode": "None"} | kw
    )


class WriterSink:
    """What the acquisition service wires up (the sink publishes onto the bus, whose lossless first
    subscriber is the historian writer); remembers when probe values were submitted."""

    def __init__(self, writer: HistorianWriter, probe_index: int | None) -> None:
        self.writer, self.probe = writer, probe_index
        self.bus = Bus()
        self.bus.attach("historian", writer.submit, writer.submit_events)
        self.rows = 0
        self.pending: list[tuple[int, float]] = []  # (produced count after this submit, probe value ms)

    def emit(self, batch: SampleBatch) -> None:
        self.bus.publish(batch)
        self.rows += len(batch)
        if self.probe is not None:
            rows = batch.value[batch.series == self.probe]
            if len(rows):
                produced = self.writer.stats().produced
                self.pending += [(produced, float(v)) for v in rows.tolist()]

    def emit_events(self, events: list[Event]) -> None:
        self.bus.publish_events(events)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def ours(endpoint: str, influx: InfluxDB1Server, tmp: Path, db: str, latency: bool) -> dict[str, Any]:
    tags = plant_tags()
    cfg = HistorianConfig.model_validate(
        {
            "url": f"influxdb-v1+http://127.0.0.1:{influx.port}/{db}",
            "spool": {"dir": str(tmp / f"spool-{db}")},
            "health_interval_s": 0,
        }
    )
    writer = HistorianWriter(InfluxV1Store(parse_url(cfg.url), None, None, cfg.timeout_s, True), cfg)
    await writer.start()
    sink = WriterSink(writer, len(tags) - 1 if latency else None)
    con = OpcUaConnector(SourceContext("bench", settings(endpoint), tags, state_dir=tmp / "state"))
    await con.start(sink)
    while sink.rows < len(tags):  # initial values in
        await asyncio.sleep(0.05)
    latencies: list[float] = []
    sink.pending.clear()  # the initial (stale) probe value is not a change
    r0, c0, t0 = sink.rows, cpu(), time.perf_counter()
    while time.perf_counter() - t0 < WINDOW_S:
        await asyncio.sleep(0.005)
        if latency and sink.pending:
            written = writer.stats().written
            now_ms = time.time() * 1000.0
            while sink.pending and sink.pending[0][0] <= written:
                latencies.append(now_ms - sink.pending.pop(0)[1])
    dt, rows, used = time.perf_counter() - t0, sink.rows - r0, cpu() - c0
    await con.stop()
    ok = await writer.flush(60)
    s = writer.stats()
    await writer.stop()
    return {
        "rate": rows / dt,
        "cpu_us": used / max(rows, 1) * 1e6,
        "delivered": ok and s.written == s.produced,
        "written": s.written,
        "latencies": latencies,
    }


async def bare(endpoint: str) -> dict[str, Any]:
    """A plain asyncua subscription of the same tags with a counting handler (its documented usage)."""
    count = 0

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            nonlocal count
            count += 1

    async with Client(endpoint, timeout=10) as c:
        ns = await c.get_namespace_index(URI)
        nodes = [c.get_node(ua.NodeId(t.node_id.split(";s=", 1)[1], ns)) for t in plant_tags()]
        sub = await c.create_subscription(250, Handler())
        await sub.subscribe_data_change(nodes, queuesize=10, sampling_interval=100)
        while count < len(nodes):
            await asyncio.sleep(0.05)
        n0, c0, t0 = count, cpu(), time.perf_counter()
        await asyncio.sleep(WINDOW_S)
        dt, rows, used = time.perf_counter() - t0, count - n0, cpu() - c0
        await sub.delete()
    return {"rate": rows / dt, "cpu_us": used / max(rows, 1) * 1e6}


async def many(endpoint: str, n: int, tmp: Path, period: float) -> dict[str, Any]:
    tags = [OpcUaTag(asset="bench/many", signal=f"v{i}", node_id=f"nsu={URI};s=bench/v{i}") for i in range(n)]
    rows = 0
    lags: list[float] = []
    per_round: dict[int, int] = {}

    class Sink:
        def emit(self, batch: SampleBatch) -> None:
            nonlocal rows
            rows += len(batch)
            lags.append(time.time() - int(batch.ts.min()) / 1e9)
            stamps, counts = np.unique(batch.ts, return_counts=True)
            for t, c in zip(stamps.tolist(), counts.tolist(), strict=True):
                per_round[t] = per_round.get(t, 0) + c

        def emit_events(self, events: list[Event]) -> None:
            pass

    con = OpcUaConnector(
        SourceContext(
            "many",
            settings(endpoint, subscription={"publishing_interval_ms": 500}),
            tags,
            state_dir=tmp / "s2",
        )
    )
    t_connect = time.perf_counter()
    await con.start(Sink())
    while rows < n:
        await asyncio.sleep(0.05)
    setup = time.perf_counter() - t_connect
    lags.clear()
    per_round.clear()
    r0, c0, t0 = rows, cpu(), time.perf_counter()
    await asyncio.sleep(WINDOW_S * 1.5)
    dt, got, used = time.perf_counter() - t0, rows - r0, cpu() - c0
    failed = len(con.failed_items)
    await asyncio.sleep(period + 1)  # let the last round in the window arrive before counting
    await con.stop()
    rounds = sorted(per_round.items())[:-1]  # the newest round may still be arriving
    return {
        "setup_s": setup,
        "rate": got / dt,
        "offered": n / period,
        "cpu_pct": used / dt * 100,
        "rss": rss_mib(),
        "lag_p99": float(np.percentile(lags, 99)) if lags else float("nan"),
        "lag_max": max(lags) if lags else float("nan"),
        "failed": failed,
        "rounds": len(rounds),
        "complete": sum(1 for _, c in rounds if c == n),
    }


async def run() -> None:
    logging.basicConfig(level=logging.WARNING)
    InfluxDB1Server.find()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        influx = InfluxDB1Server(tmp / "influxd")
        influx.start()
        try:
            port = free_port()
            proc = start_server("--serve-plant", str(port), "--tick", "0")
            endpoint = f"opc.tcp://127.0.0.1:{port}/shopfloor/simulator"
            try:
                a = await ours(endpoint, influx, tmp, "bench_a", latency=False)
                b = await bare(endpoint)
            finally:
                stop(proc)
            print(
                f"(a) default plant ({len(plant_tags())} tags), simulator stepping flat out in its own process, {WINDOW_S:.0f} s each:"
            )
            print(
                f"    ours → HistorianWriter → influxd : {a['rate']:10,.0f} samples/s  client CPU {a['cpu_us']:.1f} µs/sample  (all acknowledged by influxd: {a['delivered']}, {a['written']:,} points)"
            )
            print(
                f"    bare asyncua subscription        : {b['rate']:10,.0f} samples/s  client CPU {b['cpu_us']:.1f} µs/sample"
            )
            print(
                f"    ratio ours/bare: {a['rate'] / b['rate']:.2f}x samples/s (goal >= 0.8x); CPU per sample {a['cpu_us'] / b['cpu_us']:.2f}x"
            )

            port = free_port()
            proc = start_server("--serve-plant", str(port), "--tick", "0.1")
            endpoint = f"opc.tcp://127.0.0.1:{port}/shopfloor/simulator"
            try:
                lat = await ours(endpoint, influx, tmp, "bench_b", latency=True)
            finally:
                stop(proc)
            ms = np.array(lat["latencies"])
            print(
                f"(b) value change in the simulator → acknowledged by influxd (publishing 250 ms, writer batch 200 ms), {len(ms)} probes:"
            )
            if len(ms):
                print(
                    f"    p50 {np.percentile(ms, 50):.0f} ms  p99 {np.percentile(ms, 99):.0f} ms  max {ms.max():.0f} ms  (goal p99 < 1000 ms)"
                )

            n, period = 10_000, 2.0
            port = free_port()
            proc = start_server("--serve-many", str(port), "--n", str(n), "--period", str(period))
            try:
                m = await many(f"opc.tcp://127.0.0.1:{port}/bench", n, tmp, period)
            finally:
                stop(proc)
            print(
                f"(c) {n:,} monitored items on one connector (bare asyncua server updates all every {period:.0f} s):"
            )
            print(
                f"    subscribed in {m['setup_s']:.1f} s, {m['failed']} failed; {m['rate']:,.0f} samples/s; server rounds seen {m['rounds']}, "
                f"complete (all {n:,} values) {m['complete']}; "
                f"source→connector lag p99 {m['lag_p99']:.2f} s (max {m['lag_max']:.2f} s); client CPU {m['cpu_pct']:.0f}% of one core; RSS {m['rss']:.0f} MiB"
            )
        finally:
            influx.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve-plant", type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve-many", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tick", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=10_000, help=argparse.SUPPRESS)
    p.add_argument("--period", type=float, default=2.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    if args.serve_plant:
        asyncio.run(serve_plant(args.serve_plant, args.tick))
    elif args.serve_many:
        asyncio.run(serve_many(args.serve_many, args.n, args.period))
    else:
        asyncio.run(run())


if __name__ == "__main__":
    main()
