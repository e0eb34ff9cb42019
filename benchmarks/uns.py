"""Benchmark of the unified namespace: edge writer -> Mosquitto -> ingest -> historian, beside a bare publish/subscribe
loop of the same payloads with the same MQTT library (aiomqtt/paho) in the same run: samples/s, latency, scale-out.
"""

# Figures (one line each, ``ratio`` = ours / the reference measured in this run):
# 1. samples/s from the first sample produced into the edge's bus (acquisition's wiring: bus -> HistorianWriter
#    -> uns.publisher.MqttPublisher, spool and all) to the last one acknowledged by the historian after
#    uns.ingest.Ingest (its own OS process) stored it; the historian's row count is checked. Beside it the
#    same JSON messages (uns.json_payload of the same 20,000-point batches) published QoS 1 by a bare
#    aiomqtt client (1000 in flight, as the publisher) to a bare subscriber that decodes and stores nothing.
# 2. end-to-end latency p50/p99 at a steady rate: a sample's produce time (its ts_ns) to the historian's
#    acknowledgement of its write, beside the bare loop publishing each poll at once (to its arrival).
# 3. throughput with 1, 2 and 4 ingest processes in one share group (each its own client id).
# Run: .venv/bin/python benchmarks/uns.py [--quick] [--samples N] [--historian URL] [--profile] (needs Debian's
# mosquitto; SQLite in a temp dir by default; a --historian database gets distinct time ranges per run).

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import pstats
import resource
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file is benchmarks/uns.py: keep its directory off the path, or it would shadow the uns package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402

from historian.factory import open_reader  # noqa: E402
from historian.writer import HistorianWriter  # noqa: E402
from shopfloor.app.pipeline import edge_stream  # noqa: E402
from shopfloor.batch import SampleBatch  # noqa: E402
from shopfloor.config.load import load_plant_config  # noqa: E402
from shopfloor.config.publish import PublishConfig  # noqa: E402
from shopfloor.config.schema import HistorianConfig, PlantConfig  # noqa: E402
from shopfloor.model import SignalType  # noqa: E402
from shopfloor.testing.servers import MosquittoServer  # noqa: E402
from uns.json_payload import encode_samples  # noqa: E402
from uns.topics import MqttMessage, TopicTree  # noqa: E402

PLANT = ROOT / "examples" / "qijiang-plant.yaml"
CONSUMER = HERE / "uns_consumer.py"
SUBMIT = 1000  # samples per bus.publish(), like a connector's poll of 1000 tags
PUBLISH_BATCH = 20_000  # the publisher's default batch.max_points: the bare loop sends the same messages
INFLIGHT = 1000  # the publisher's default max_inflight, the bare publisher's window too
TICK_NS = 100_000_000  # synthetic throughput data: every series sampled every 100 ms
T_BASE = 1_767_225_600_000_000_000  # 2026-01-01 UTC; run k's samples start at T_BASE + k * RUN_SPAN
RUN_SPAN = 10**15  # 11.6 days per run: no two runs' samples share a timestamp


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu_s(pid: int) -> float:
    """utime + stime of another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- data -------------------------------------------------------------------------------------------
def plant_series(cfg: PlantConfig) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The plant's series (231 for the default plant) and which of them are numeric floats."""
    keys = [(a.path, s.name) for a in cfg.assets for s in a.signals]
    is_float = np.array([s.type == SignalType.FLOAT for a in cfg.assets for s in a.signals])
    return keys, is_float


def make_batches(keys: list[tuple[str, str]], is_float: np.ndarray, total: int, t0: int) -> list[SampleBatch]:
    """``total`` samples round-robin over the series, every series every 100 ms, in 1000-sample batches:
    floats with 3 decimals around 500, the int/bool/state series small whole numbers."""
    rng = np.random.default_rng(0)
    n = len(keys)
    out = []
    for start in range(0, total, SUBMIT):
        idx = np.arange(start, min(total, start + SUBMIT))
        series = idx % n
        value = np.where(
            is_float[series], np.round(rng.normal(500, 50, len(idx)), 3), rng.integers(0, 8, len(idx))
        )
        out.append(SampleBatch.from_columns(keys, series, t0 + (idx // n) * TICK_NS, value))
    return out


def bare_messages(batches: list[SampleBatch], prefix: str) -> list[MqttMessage]:
    """The publisher's messages for these batches: 20,000-point writer batches, one message per series."""
    tree = TopicTree(prefix)
    big = SampleBatch.concat(batches)
    out: list[MqttMessage] = []
    for i in range(0, len(big), PUBLISH_BATCH):
        out += encode_samples(big.take(slice(i, i + PUBLISH_BATCH)), tree)
    return out


# -- consumers in their own processes ---------------------------------------------------------------------
@dataclass
class Consumer:
    """benchmarks/uns_consumer.py as a child process; its stdout read line by line; stopped by PID."""

    args: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    writes: list[tuple[int, int]] = field(default_factory=list)  # (time_ns, points) per historian write
    done_ns: int | None = None
    final: dict[str, Any] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None
    _stopped: bool = False

    @property
    def written(self) -> int:
        return sum(n for _, n in self.writes)

    async def start(self, timeout_s: float = 60) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(CONSUMER), *self.args, stdout=asyncio.subprocess.PIPE, stderr=err, env=env
            )
        self._reader = asyncio.create_task(self._read())
        waits = [asyncio.ensure_future(self.ready.wait()), asyncio.ensure_future(self.proc.wait())]
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if not self.ready.is_set():
            raise RuntimeError(f"consumer not ready: {self.log_tail()}")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            kind, _, rest = raw.decode().rstrip("\n").partition(" ")
            if kind == "w":
                t, n = rest.split()
                self.writes.append((int(t), int(n)))
            elif kind == "done":
                self.done_ns = int(rest.split()[0])
            elif kind == "ready":
                self.ready.set()
            elif kind == "final":
                self.final = json.loads(rest)

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def cpu_s(self) -> float:
        return float((self.final or {}).get("cpu_s", float("nan")))

    async def stop(self, timeout_s: float = 90) -> None:
        """SIGTERM (the ingest writes and acknowledges what arrived), wait; SIGKILL if it does not exit."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 10)
        if self.proc.returncode != 0:
            print(f"  (consumer exited with {self.proc.returncode}: {self.log_tail(800)})", flush=True)


async def stop_all(consumers: Sequence[Consumer]) -> None:
    await asyncio.gather(*(c.stop() for c in consumers))


def completed_at(consumers: Sequence[Consumer], total: int) -> int | None:
    """When, across the consumers, the historian had acknowledged ``total`` points (None: not yet)."""
    writes = sorted(w for c in consumers for w in c.writes)
    done = 0
    for t, n in writes:
        done += n
        if done >= total:
            return t
    return None


async def wait_until(pred: Any, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        if loop.time() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


# -- the bare loop's publisher ---------------------------------------------------------------------------
class BarePublisher(aiomqtt.Client):
    """aiomqtt's client (MQTT 5, TCP_NODELAY, like the publisher); QoS 1 publishes handed to paho with at
    most ``INFLIGHT`` unacknowledged, PUBACKs counted in paho's on_publish."""

    def __init__(self, port: int, client_id: str) -> None:
        super().__init__(
            "127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, timeout=30,
            max_inflight_messages=0, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )  # fmt: skip
        self.unacked = 0
        self.progress = asyncio.Event()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        self.unacked -= 1
        self.progress.set()

    async def publish_all(self, messages: Sequence[MqttMessage], wait_acks: bool = True) -> None:
        publish = self._client.publish
        for m in messages:
            while self.unacked >= INFLIGHT:
                self.progress.clear()
                await asyncio.wait_for(self.progress.wait(), 30)
            info = publish(m.topic, m.payload, 1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"publish failed: {info.rc}")
            self.unacked += 1
        while wait_acks and self.unacked:
            self.progress.clear()
            await asyncio.wait_for(self.progress.wait(), 30)


# -- runs --------------------------------------------------------------------------------------------
@dataclass
class Run:
    rate: float  # samples/s, first produced to last stored (or received)
    stored: int  # what the historian holds of the run (bare: messages received)
    seconds: float
    cpu_us: dict[str, float]  # CPU µs per sample: producer, broker, consumers
    extra: str = ""


class Bench:
    def __init__(
        self, args: argparse.Namespace, tmp: Path, broker: MosquittoServer, plant: PlantConfig
    ) -> None:
        self.args = args
        self.tmp = tmp
        self.broker = broker
        self.plant = plant
        self.keys, self.is_float = plant_series(plant)
        self.runs = 0
        self.null_runs: set[int] = set()

    def next_run(self) -> tuple[int, str]:
        self.runs += 1
        return self.runs, f"bench/run-{self.runs}"

    def historian_url(self, run: int) -> str:
        if run in self.null_runs:
            return "null"
        return self.args.historian or f"sqlite:///{self.tmp / f'historian-{run}.db'}"

    def publish_config(self, run: int, prefix: str, batch: dict[str, int] | None = None) -> PublishConfig:
        doc: dict[str, Any] = {
            "url": self.broker.url,
            "client_id": f"bench-edge-{run}",
            "topic_prefix": prefix,
            "spool": {"dir": str(self.tmp / f"spool-{run}")},
            "timeout_s": 30,
        }
        if batch:
            doc["batch"] = batch
        return PublishConfig.model_validate(doc)

    def ingest(self, run: int, prefix: str, i: int, extra: Sequence[str] = ()) -> Consumer:
        cid = f"bench-ingest-{run}-{i}"
        return Consumer(
            ["ingest", "--url", self.broker.url, "--prefix", prefix, "--client-id", cid, "--group",
             f"bench-{run}", "--historian", self.historian_url(run), "--dir", str(self.tmp / cid), *extra],
            self.tmp / f"{cid}.log",
        )  # fmt: skip

    async def count_stored(self, run: int, start_ns: int, end_ns: int) -> int:
        """Samples of the plant's series the historian holds in [start_ns, end_ns)."""
        reader = open_reader(HistorianConfig.model_validate({"url": self.historian_url(run)}))
        await reader.open()
        try:
            total = 0
            for asset, sig in self.keys:
                frame = await reader.query_agg(
                    asset, sig, start_ns, end_ns, RUN_SPAN, "count", include_bad=True
                )
                total += int(np.nansum(frame.value))
            return total
        finally:
            await reader.close()

    # -- 1 and 3: throughput ---------------------------------------------------------------------------
    async def pipeline(
        self, total: int, n_ingest: int, profile: Path | None = None, null_store: bool = False
    ) -> Run:
        run, prefix = self.next_run()
        if null_store:
            self.null_runs.add(run)
        t_data = T_BASE + run * RUN_SPAN
        batches = make_batches(self.keys, self.is_float, total, t_data)
        extra = ["--profile", str(profile)] if profile else []
        consumers = [self.ingest(run, prefix, i, extra) for i in range(n_ingest)]
        writers: list[HistorianWriter] = []
        try:
            await asyncio.gather(*(c.start() for c in consumers))
            writers, bus = edge_stream(self.plant, historian=False, publish=self.publish_config(run, prefix))
            (pw,) = writers
            await pw.start()
            broker_cpu0, cpu0 = proc_cpu_s(self.broker_pid), cpu_s()
            t0 = time.time_ns()
            for i, b in enumerate(batches):
                bus.publish(b)
                if i % 5 == 4:
                    await asyncio.sleep(0)  # a connector yields between polls
            published_ns: list[int] = []

            def finished() -> bool:
                if not published_ns and pw.stats().written >= total:
                    published_ns.append(time.time_ns())
                return completed_at(consumers, total) is not None

            limit = max(120, total / 5000)
            await wait_until(finished, limit, f"{total:,} samples stored")
            t1 = completed_at(consumers, total)
            assert t1 is not None
            if not null_store:
                # a message delivered twice is written twice: the writes add up to the total before the
                # historian holds every sample; then the end is the last write before it was seen complete
                loop = asyncio.get_running_loop()
                deadline = loop.time() + limit
                while True:
                    last = max(t for c in consumers for t, _ in c.writes)
                    if await self.count_stored(run, t_data, t_data + RUN_SPAN) >= total:
                        t1 = last
                        break
                    if loop.time() > deadline:
                        break  # reported below: the historian does not hold every sample
                    await asyncio.sleep(0.5)
            cpu_prod, cpu_broker = cpu_s() - cpu0, proc_cpu_s(self.broker_pid) - broker_cpu0
            await pw.stop(timeout_s=30)
            writers = []
            await stop_all(consumers)
            stored = -1 if null_store else await self.count_stored(run, t_data, t_data + RUN_SPAN)
        finally:
            for w in writers:
                await w.stop(timeout_s=5)
            await stop_all(consumers)
        dt = (t1 - t0) / 1e9
        pub_s = (published_ns[0] - t0) / 1e9 if published_ns else float("nan")
        cpu = {"edge": cpu_prod, "broker": cpu_broker, "ingest": sum(c.cpu_s() for c in consumers)}
        redelivered = sum(int((c.final or {}).get("stats", {}).get("redelivered", 0)) for c in consumers)
        written = sum(c.written for c in consumers)
        if redelivered or written != total or (stored != total and not null_store):
            print(f"  (run {run}: {written:,} samples written for {total:,}, {redelivered} messages "
                  f"redelivered; the ingest logged:)", flush=True)  # fmt: skip
            for c in consumers:
                for ln in c.log_tail(4000).splitlines()[-12:]:
                    print(f"    {ln}", flush=True)
        return Run(
            total / dt,
            stored,
            dt,
            {k: v / total * 1e6 for k, v in cpu.items()},
            f"publisher all acknowledged after {pub_s:.2f} s; redelivered {redelivered}",
        )

    async def bare(self, total: int) -> Run:
        run, prefix = self.next_run()
        batches = make_batches(self.keys, self.is_float, total, T_BASE + run * RUN_SPAN)
        messages = bare_messages(batches, prefix)
        sub = Consumer(
            ["bare", "--url", self.broker.url, "--prefix", prefix, "--client-id", f"bench-bare-sub-{run}",
             "--expect", str(len(messages))],
            self.tmp / f"bare-{run}.log",
        )  # fmt: skip
        try:
            await sub.start()
            async with BarePublisher(self.broker.port, f"bench-bare-pub-{run}") as pub:
                broker_cpu0, cpu0 = proc_cpu_s(self.broker_pid), cpu_s()
                t0 = time.time_ns()
                await pub.publish_all(messages)
                acked = time.time_ns()
                await wait_until(lambda: sub.done_ns is not None, max(120, total / 5000), "bare messages")
                cpu_prod, cpu_broker = cpu_s() - cpu0, proc_cpu_s(self.broker_pid) - broker_cpu0
            await sub.stop()
        finally:
            await sub.stop()
        assert sub.done_ns is not None
        dt = (sub.done_ns - t0) / 1e9
        received = int((sub.final or {}).get("stats", {}).get("received", -1))
        cpu = {"edge": cpu_prod, "broker": cpu_broker, "ingest": sub.cpu_s()}
        return Run(
            total / dt,
            received,
            dt,
            {k: v / total * 1e6 for k, v in cpu.items()},
            f"{len(messages):,} messages of {total / len(messages):.0f} samples; all acknowledged after "
            f"{(acked - t0) / 1e9:.2f} s",
        )

    # -- 2: latency ----------------------------------------------------------------------------------------
    def poll_plan(self, rate: float, seconds: float, poll_ms: float) -> tuple[int, float, int]:
        """A connector's polls at ``rate`` samples/s: samples per series per poll (whole, >= 1), the poll
        period in seconds (so the rate is exact), and how many polls make ``seconds``."""
        n = len(self.keys)
        per = max(1, round(rate * poll_ms / 1000 / n))
        period = per * n / rate
        return per, period, max(1, round(seconds / period))

    async def ticks(self, plan: tuple[int, float, int], produce: Any) -> None:
        """``produce(batch)`` once per poll of ``plan``: ``per`` samples of every series, stamped now
        (the older ones of a series 1 ns, 2 ns, ... earlier, so that every sample has its own key)."""
        per, period, polls = plan
        n = len(self.keys)
        loop = asyncio.get_running_loop()
        start = loop.time()
        series = np.tile(np.arange(n), per)
        back = np.repeat(np.arange(per), n)
        floats = self.is_float[series]
        rng = np.random.default_rng(1)
        for k in range(polls):
            delay = start + k * period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            value = np.where(
                floats, np.round(rng.normal(500, 50, len(series)), 3), rng.integers(0, 8, len(series))
            )
            await produce(SampleBatch.from_columns(self.keys, series, time.time_ns() - back, value))

    async def latency_pipeline(
        self, plan: tuple[int, float, int], pub_age_ms: int | None, ingest_age_ms: int | None
    ) -> dict[str, float]:
        run, prefix = self.next_run()
        extra = ["--latency"] + (["--batch-age-ms", str(ingest_age_ms)] if ingest_age_ms else [])
        consumer = self.ingest(run, prefix, 0, extra)
        writers: list[HistorianWriter] = []
        try:
            await consumer.start()
            batch = {"max_points": PUBLISH_BATCH, "max_age_ms": pub_age_ms} if pub_age_ms else None
            writers, bus = edge_stream(
                self.plant, historian=False, publish=self.publish_config(run, prefix, batch)
            )
            (pw,) = writers
            await pw.start()
            await asyncio.sleep(0.5)  # connected

            async def produce(b: SampleBatch) -> None:
                bus.publish(b)

            per, _, polls = plan
            await self.ticks(plan, produce)
            total = polls * per * len(self.keys)
            await wait_until(lambda: consumer.written >= total, 120, "latency samples stored")
            await pw.stop(timeout_s=30)
            writers = []
            await consumer.stop()
        finally:
            for w in writers:
                await w.stop(timeout_s=5)
            await consumer.stop()
        return dict((consumer.final or {}).get("latency_ms", {}))

    async def latency_bare(self, plan: tuple[int, float, int]) -> dict[str, float]:
        run, prefix = self.next_run()
        n = len(self.keys)
        ticks = plan[2]
        sub = Consumer(
            ["bare", "--url", self.broker.url, "--prefix", prefix, "--client-id", f"bench-bare-sub-{run}",
             "--expect", str(ticks * n), "--latency"],
            self.tmp / f"bare-{run}.log",
        )  # fmt: skip
        tree = TopicTree(prefix)
        try:
            await sub.start()
            async with BarePublisher(self.broker.port, f"bench-bare-pub-{run}") as pub:
                await asyncio.sleep(0.5)

                async def produce(b: SampleBatch) -> None:
                    await pub.publish_all(encode_samples(b, tree), wait_acks=False)

                await self.ticks(plan, produce)
                await wait_until(lambda: sub.done_ns is not None, 60, "bare latency messages")
            await sub.stop()
        finally:
            await sub.stop()
        return dict((sub.final or {}).get("latency_ms", {}))

    @property
    def broker_pid(self) -> int:
        assert self.broker.proc is not None
        return self.broker.proc.pid


async def best(run: Callable[[], Awaitable[Run]], rounds: int) -> Run:
    """The fastest of ``rounds`` runs; its ``stored`` is the smallest any of them had (each must hold all)."""
    runs = [await run() for _ in range(max(1, rounds))]
    top = max(runs, key=lambda r: r.rate)
    top.stored = min(r.stored for r in runs)
    if rounds > 1:
        top.extra += f"; best of {len(runs)}: " + ", ".join(f"{r.rate:,.0f}" for r in runs)
    return top


def line(
    name: str, ours: float, base: float, unit: str, base_name: str = "bare pub/sub", note: str = ""
) -> None:
    print(
        f"{name:<60} ours {ours:>11,.1f} {unit}   {base_name} {base:>11,.1f} {unit}   ratio {ours / base:5.2f}x"
        + (f"  {note}" if note else ""),
        flush=True,
    )


def cpu_text(r: Run) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_us.items())


async def throughput(bench: Bench, total: int, args: argparse.Namespace, tmp: Path) -> Run:
    """Figure 1: the pipeline beside the bare loop; and, as a diagnostic, the pipeline without the historian."""
    base = await best(lambda: bench.bare(total), args.rounds)
    print(f"  bare pub/sub: {base.seconds:.2f} s, {base.stored:,} messages received; {base.extra}; "
          f"CPU us/sample {cpu_text(base)}", flush=True)  # fmt: skip
    prof = tmp / "ingest.prof" if args.profile else None
    ours = await best(lambda: bench.pipeline(total, 1, prof), args.rounds)
    if prof is not None:
        print("--- profile of the ingest process (last pipeline run), by own time", flush=True)
        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(30)
        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(30)
    print(f"  pipeline: {ours.seconds:.2f} s, historian holds {ours.stored:,} of {total:,} samples; "
          f"{ours.extra}; CPU us/sample {cpu_text(ours)}", flush=True)  # fmt: skip
    line("uns pipeline samples/s (edge -> mosquitto -> 1 ingest -> hist)", ours.rate, base.rate,
         "samples/s", note="(goal >= 0.8x)")  # fmt: skip
    if ours.stored != total:
        print(f"  !! the historian holds {ours.stored:,} samples, expected {total:,}", flush=True)
    null = await best(lambda: bench.pipeline(total, 1, null_store=True), args.rounds)
    line("uns pipeline samples/s, historian write left out (diagnostic)", null.rate, base.rate,
         "samples/s", note="(ingest into a store that acknowledges at once and keeps nothing)")  # fmt: skip
    print(f"  {null.seconds:.2f} s; {null.extra}; CPU us/sample {cpu_text(null)}", flush=True)
    print(f"  so the historian write costs the ingest {ours.cpu_us['ingest'] - null.cpu_us['ingest']:.2f} "
          f"us/sample of its {ours.cpu_us['ingest']:.2f}", flush=True)  # fmt: skip
    return ours


async def latency(bench: Bench, args: argparse.Namespace) -> None:
    """Figure 2: end-to-end latency at a steady rate, with the default batch ages and with short ones."""
    plan = bench.poll_plan(args.rate, args.latency_s, args.poll_ms)
    per, period, polls = plan
    print(f"latency: {args.rate:,.0f} samples/s as a poll of {per} samples of each of the "
          f"{len(bench.keys)} series every {period * 1000:.1f} ms, {polls} polls; produce time = the "
          f"sample's ts_ns; bare: each poll published at once (one message per series), to its "
          f"arrival; ours: to the historian's acknowledgement", flush=True)  # fmt: skip
    lat_bare = await bench.latency_bare(plan)
    for label, pub_age, ing_age in (
        ("default batch ages 1000+200 ms", None, None),
        ("batch ages 20+20 ms", 20, 20),
    ):
        lat = await bench.latency_pipeline(plan, pub_age, ing_age)
        what = f"{args.rate:,.0f} samples/s, {label}"
        for p in ("p50", "p99"):
            line(f"uns latency {p} ms ({what})", lat[p], lat_bare[p], "ms", note="(lower is better)")
        print(f"  {lat.get('n', 0):,} samples; p99.9 {lat.get('p999', 0):.1f} ms, max "
              f"{lat.get('max', 0):.1f} ms (bare: p99.9 {lat_bare.get('p999', 0):.1f}, max "
              f"{lat_bare.get('max', 0):.1f})", flush=True)  # fmt: skip


async def scale_out(
    bench: Bench, total: int, args: argparse.Namespace, procs: list[int], one: Run | None
) -> None:
    """Figure 3: 1, 2 and 4 ingest processes in one share group (the 1-process run of figure 1 reused)."""
    sqlite = (args.historian or "sqlite").startswith("sqlite")
    print(f"scale-out: N ingest processes in one share group; this machine has {os.cpu_count()} "
          f"CPUs shared by the edge producer, Mosquitto and every ingest process; one historian for all "
          f"{'(SQLite: one writer at a time)' if sqlite else ''}", flush=True)  # fmt: skip
    first: Run | None = None
    for n in procs:
        if n == 1 and one is not None:
            r = one
        else:
            r = await best(functools.partial(bench.pipeline, total, n), args.rounds)
        first = first or r
        line(f"uns pipeline samples/s with {n} ingest process{'es' if n > 1 else ''}", r.rate,
             first.rate, "samples/s", base_name=f"{procs[0]} process{'es' if procs[0] > 1 else ''}")  # fmt: skip
        print(f"  historian holds {r.stored:,} of {total:,}; {r.extra}; CPU us/sample {cpu_text(r)}",
              flush=True)  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--quick", action="store_true", help="200,000 samples, 4 s latency runs")
    ap.add_argument("--historian", metavar="URL", help="historian URL instead of SQLite in a temp dir")
    ap.add_argument("--rate", type=float, default=5000.0, help="samples/s of the latency runs")
    ap.add_argument("--latency-s", type=float, default=15.0)
    ap.add_argument("--poll-ms", type=float, default=200.0, help="latency runs: the connector's poll period")
    ap.add_argument(
        "--figures", default="throughput,latency,scale", help="which parts to run (comma-separated)"
    )
    ap.add_argument("--rounds", type=int, default=1, help="throughput runs: best of this many")
    ap.add_argument("--profile", action="store_true", help="cProfile the ingest of the pipeline run")
    ap.add_argument("--procs", default="1,2,4", help="ingest process counts of the scale-out")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.latency_s = min(args.samples, 200_000), min(args.latency_s, 4.0)
    total = args.samples
    plant = load_plant_config(PLANT)
    with tempfile.TemporaryDirectory(prefix="bench-uns-") as d:
        tmp = Path(d)
        broker = MosquittoServer(tmp / "mosquitto")
        broker.start()
        try:
            bench = Bench(args, tmp, broker, plant)
            where = args.historian or "SQLite (temp dir)"
            print(
                f"{total:,} samples over {len(bench.keys)} series (examples/qijiang-plant.yaml), submitted "
                f"{SUBMIT} at a time; Mosquitto {broker.url}; historian {where}; {os.cpu_count()} CPUs "
                f"shared by producer, broker and ingest; load average {os.getloadavg()[0]:.2f} at the start",
                flush=True,
            )
            figures = set(args.figures.split(","))
            ours: Run | None = None
            if "throughput" in figures:
                ours = await throughput(bench, total, args, tmp)
            if "latency" in figures:
                await latency(bench, args)
            if "scale" in figures:
                await scale_out(bench, total, args, [int(p) for p in args.procs.split(",")], ours)
            print(f"load average {os.getloadavg()[0]:.2f} at the end (other work on this machine counts)")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
