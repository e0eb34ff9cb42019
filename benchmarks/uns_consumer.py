"""Benchmark helper of benchmarks/uns.py: one consumer process, the real uns.ingest.Ingest into the historian or a
bare MQTT subscriber (same library, decodes and stores nothing), reporting its progress as lines on stdout.
"""

# Lines: ``ready <cpu_s>`` once subscribed; ingest: ``w <time_ns> <points>`` after every sample write the
# historian acknowledged (points of the benchmark's series, the ``_system`` counters left out); bare:
# ``done <time_ns> <messages>`` when the expected number of messages has arrived. On SIGTERM it stops
# (ingest: writes and acknowledges what arrived) and prints ``final <json>`` (counters, CPU, latencies).
# Run by benchmarks/uns.py, not by hand: ``uns_consumer.py ingest|bare --url mqtt://127.0.0.1:PORT ...``.

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import resource
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this directory holds a uns.py (the benchmark): keep it off the path, or it would shadow the uns package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import numpy as np  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402

from historian.base import Store  # noqa: E402
from historian.factory import open_store  # noqa: E402
from shopfloor.batch import SampleBatch  # noqa: E402
from shopfloor.config.ingest import IngestConfig  # noqa: E402
from shopfloor.config.schema import HistorianConfig  # noqa: E402
from shopfloor.model import Event, system_asset  # noqa: E402
from uns.ingest import Ingest  # noqa: E402
from uns.json_payload import _SAMPLES_HEAD  # noqa: E402

SYSTEM = "/_system/"  # counters of the publisher and the ingest: stored, but not the benchmark's samples
TS_AT = len(_SAMPLES_HEAD) + 1  # the first row's ts_ns starts here: {"v":1,"samples":[[<ts_ns>,...


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def percentiles_ms(lat_ns: list[np.ndarray]) -> dict[str, float]:
    if not lat_ns:
        return {}
    a = np.concatenate(lat_ns) / 1e6
    if not len(a):
        return {}
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {
        "n": len(a),
        "p50": float(p50),
        "p99": float(p99),
        "p999": float(p999),
        "max": float(a.max()),
    }


@dataclass(slots=True)
class _Timed:
    payload: Any
    points: int
    ts: np.ndarray | None


class TimedStore:
    """The historian store with a stopwatch around ``send``: the time the historian acknowledged each
    sample write, and (``latency``) every sample's age then (acknowledged time minus its ts_ns)."""

    def __init__(self, inner: Store, latency: bool) -> None:
        self.inner = inner
        self.name = str(getattr(inner, "name", "historian"))
        self.latency = latency
        self.lat_ns: list[np.ndarray] = []

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> bool:
        return await self.inner.ping()

    def encode_samples(self, batch: SampleBatch) -> _Timed:
        ours = np.fromiter((SYSTEM not in k.asset for k in batch.keys), dtype=bool, count=len(batch.keys))
        mask = ours[batch.series]
        ts = batch.ts[mask] if self.latency else None
        return _Timed(self.inner.encode_samples(batch), int(mask.sum()), ts)

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> _Timed:
        return _Timed(self.inner.encode_events(events, seqs), 0, None)

    async def send(self, payload: _Timed) -> None:
        await self.inner.send(payload.payload)
        t = time.time_ns()
        if payload.points:
            emit(f"w {t} {payload.points}")
        if payload.ts is not None and len(payload.ts):
            self.lat_ns.append(t - payload.ts)


class NullStore:
    """A historian that acknowledges every write at once and keeps nothing (``--historian null``): the
    diagnostic run that tells the ingest's own cost from the historian's."""

    name = "null (keeps nothing)"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> bool:
        return True

    def encode_samples(self, batch: SampleBatch) -> None:
        return None

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int] | None = None) -> None:
        return None

    async def send(self, payload: Any) -> None:
        pass


async def run_ingest(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    cfg = IngestConfig.model_validate(
        {
            "url": args.url,
            "client_id": args.client_id,
            "topic_prefix": args.prefix,
            "group": args.group,
            "dir": args.dir,
            "timeout_s": 30,
            "stop_timeout_s": 60,
        }
        | ({"batch": {"max_points": 5000, "max_age_ms": args.batch_age_ms}} if args.batch_age_ms else {})
    )
    inner = (
        cast(Store, NullStore())
        if args.historian == "null"
        else open_store(HistorianConfig.model_validate({"url": args.historian}))
    )
    store = TimedStore(inner, args.latency)
    ing = Ingest(
        cfg, cast(Store, store), health_asset=system_asset("central", "shopfloor", "ingest", args.client_id)
    )
    await ing.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while ing.stats().connections == 0:  # subscribed: from here on the broker keeps its messages
        if loop.time() > deadline:
            raise SystemExit(f"ingest did not subscribe: {ing.stats().last_error}")
        await asyncio.sleep(0.02)
    prof = cProfile.Profile() if args.profile else None
    cpu0 = cpu_s()
    emit(f"ready {cpu0:.3f}")
    if prof is not None:
        prof.enable()
    await stop.wait()
    cpu1 = cpu_s()
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    await ing.stop()
    s = ing.stats()
    return {
        "cpu_s": cpu1 - cpu0,
        "stats": {k: v for k, v in asdict(s).items() if k != "last_error"},
        "latency_ms": percentiles_ms(store.lat_ns),
    }


class BareSubscriber(aiomqtt.Client):
    """aiomqtt's client with paho's own PUBACKs; ``on_message`` counts (and, ``latency``, reads the first
    row's ts_ns at its fixed offset: every row of a latency-run message has the same one)."""

    def __init__(self, expect: int, latency: bool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expect = expect
        self.latency = latency
        self.count = 0
        self.lat: list[int] = []

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.count += 1
        if self.latency:
            p = message.payload
            self.lat.append(time.time_ns() - int(p[TS_AT : p.index(b",", TS_AT)]))
        if self.count == self.expect:
            emit(f"done {time.time_ns()} {self.count}")


async def run_bare(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    host, port = args.url.removeprefix("mqtt://").rsplit(":", 1)
    client = BareSubscriber(
        args.expect,
        args.latency,
        host,
        int(port),
        identifier=args.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=30,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    async with client:
        await client.subscribe(f"{args.prefix}/#", qos=1, timeout=30)
        cpu0 = cpu_s()
        emit(f"ready {cpu0:.3f}")
        await stop.wait()
        cpu1 = cpu_s()
    lat = [np.asarray(client.lat, dtype=np.int64)] if client.lat else []
    return {"cpu_s": cpu1 - cpu0, "stats": {"received": client.count}, "latency_ms": percentiles_ms(lat)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["ingest", "bare"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--group", default="")
    ap.add_argument("--historian", default="")
    ap.add_argument("--dir", default="var/ingest")
    ap.add_argument("--expect", type=int, default=0, help="bare: messages to wait for")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--profile", metavar="PATH", help="ingest: cProfile the run into PATH")
    ap.add_argument("--batch-age-ms", type=int, default=0, help="ingest: batch.max_age_ms (0: the default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    result = await (run_ingest(args, stop) if args.kind == "ingest" else run_bare(args, stop))
    emit("final " + json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
