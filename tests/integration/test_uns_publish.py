"""The northbound MQTT publisher against a real Mosquitto: the no-loss writer drives it like a store, a
subscriber on the broker receives every sample in order per series, through a killed broker, a hung one
and an ACL that refuses; names without a topic are quarantined, not lost; and ``shopfloor acquire
--publish`` puts the virtual plant's real signals on the documented topics.

Real broker (Debian's mosquitto on a free loopback port), real aiomqtt on both sides, no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mqtt_support import Recorder, make_tls_files, password_file_line, start_mosquitto, wait_for_file
from pydantic import ValidationError

from historian.errors import StoreUnavailable
from historian.writer import WriterState
from plant_simulator.config_gen import plant_config
from plant_simulator.plant import default_plant
from plant_simulator.service import SimulatorOptions, SimulatorService
from shopfloor.batch import SampleBatch
from shopfloor.config.publish import PublishConfig
from shopfloor.model import Event, EventKind, now_ns
from shopfloor.testing.servers import MosquittoServer, free_port
from uns.json_payload import decode_events, decode_samples
from uns.publisher import MqttPublisher, PublishWriter, writer_config
from uns.topics import TopicTree

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "test-uns"
SITE = "qijiang"
SERIES = [(f"{SITE}/line-{i % 2}/cell/machine-{i % 5}", f"sig_{i}") for i in range(30)]
PER_BATCH = 4  # samples of every series in one submitted batch
NS = 1_000_000_000

Key = tuple[str, str, int]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A broker of this test's own, with persistent sessions (they survive its kill and restart)."""
    server = start_mosquitto(tmp_path / "mosquitto", persistence=True)
    yield server
    server.stop()


@pytest.fixture
async def recorder(broker: MosquittoServer) -> AsyncIterator[Recorder]:
    """A subscriber to the whole test tree whose session the broker has saved to disk."""
    rec = Recorder(broker.port, TopicTree(PREFIX).subscription())
    t0 = time.time()
    await rec.start()
    wait_for_file(broker.workdir / "data" / "mosquitto.db", t0)
    yield rec
    await rec.stop()


def publish_config(url: str, spool: Path, **kw: Any) -> PublishConfig:
    base: dict[str, Any] = {
        "url": url,
        "topic_prefix": PREFIX,
        "spool": {"dir": str(spool)},
        "batch": {"max_points": 2000, "max_age_ms": 50},
        "retry": {"initial_ms": 100, "max_ms": 400, "probe_interval_ms": 100},
        "timeout_s": 2.0,
        "health_interval_s": 0,
    }
    return PublishConfig.model_validate(base | kw)


def make_writer(cfg: PublishConfig) -> PublishWriter:
    return PublishWriter(MqttPublisher(cfg, site=SITE), writer_config(cfg), seed=1)


def synthetic(k: int, t0: int) -> SampleBatch:
    """Batch ``k``: PER_BATCH samples of every series, timestamps rising with k; value = a function of
    series and timestamp, so a sample's value can be checked on arrival."""
    n = len(SERIES)
    series = np.tile(np.arange(n), PER_BATCH)
    ts = t0 + (k * PER_BATCH + np.repeat(np.arange(PER_BATCH), n)) * 1_000_000
    value = series * 1000.0 + (ts - t0) / 1e6
    return SampleBatch.from_columns(SERIES, series, ts, value, 0)


def expected_of(batches: list[SampleBatch]) -> dict[Key, float]:
    return {(s.asset, s.signal, s.ts_ns): float(s.value) for b in batches for s in b.to_samples()}


def first_arrivals(
    messages: list[tuple[str, bytes]],
) -> tuple[dict[Key, float], dict[tuple[str, str], list[int]], int]:
    """Samples by first arrival, the timestamps of each series in first-arrival order, and how many
    arrivals were repeats."""
    tree = TopicTree(PREFIX)
    seen: dict[Key, float] = {}
    order: dict[tuple[str, str], list[int]] = {}
    repeats = 0
    for topic, payload in messages:
        if tree.parse(topic).is_events:
            continue
        b = decode_samples(topic, payload, tree)
        asset, signal = b.keys[0]
        for t, v in zip(b.ts.tolist(), b.value.tolist()):
            if (asset, signal, t) in seen:
                repeats += 1
                continue
            seen[(asset, signal, t)] = v
            order.setdefault((asset, signal), []).append(t)
    return seen, order, repeats


def assert_in_order(order: dict[tuple[str, str], list[int]]) -> None:
    for key, ts in order.items():
        assert ts == sorted(ts), f"{key}: first arrivals out of timestamp order"


async def feed(
    writer: PublishWriter, batches: list[SampleBatch], count: int, t0: int, every_s: float
) -> None:
    for k in range(count):
        b = synthetic(k, t0)
        batches.append(b)
        writer.submit(b)
        await asyncio.sleep(every_s)


# -- config ----------------------------------------------------------------------------------------
def test_the_config_refuses_what_could_lose_data_or_leak_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="qos 0 is refused"):
        publish_config("mqtt://127.0.0.1:1883", tmp_path, qos=0)
    with pytest.raises(ValidationError, match="may not carry a password"):
        PublishConfig(url="mqtt://edge:s3cret@broker.plant.local")
    with pytest.raises(ValidationError, match="password_env"):
        PublishConfig.model_validate({"url": "mqtt://broker", "password": "s3cret"})
    with pytest.raises(ValidationError, match="mqtts://"):
        PublishConfig.model_validate({"url": "mqtt://broker", "tls": {"ca_file": "ca.pem"}})
    with pytest.raises(ValidationError, match=r"mqtt:// .* or mqtts://"):
        PublishConfig(url="http://broker")
    cfg = PublishConfig(url="mqtts://edge-7@broker.plant.local", password_env="X")
    assert (cfg.broker.port, cfg.broker.tls, cfg.user) == (8883, True, "edge-7")
    assert cfg.broker.redacted() == "mqtts://broker.plant.local:8883"
    assert PublishConfig(url="mqtt://b").spool.dir == Path("var/spool-mqtt")
    assert PublishConfig(url="mqtt://b").resolved_client_id("qijiang").startswith("shopfloor-qijiang-")


# -- delivery ------------------------------------------------------------------------------------
async def test_every_sample_and_event_reaches_a_subscriber_in_order(
    tmp_path: Path, broker: MosquittoServer, recorder: Recorder
) -> None:
    writer = make_writer(publish_config(broker.url, tmp_path / "spool"))
    await writer.start()
    batches: list[SampleBatch] = []
    t0 = now_ns()
    event = Event(SERIES[0][0], EventKind.ALARM, t0, "HI", "too hot", 912.0, {"limit": 900}, key="sig_0")
    try:
        writer.submit_events([event])
        await feed(writer, batches, 40, t0, 0.01)
        assert await writer.flush(30)
        expected = expected_of(batches)
        done = await recorder.wait_until(
            lambda: len(first_arrivals(recorder.messages)[0]) >= len(expected), 30
        )
        s = writer.stats()
    finally:
        await writer.stop()
    seen, order, _ = first_arrivals(recorder.messages)
    assert done, f"{len(seen)} of {len(expected)} samples arrived"
    assert seen == expected
    assert_in_order(order)
    events = [decode_events(t, p, TopicTree(PREFIX)) for t, p in recorder.messages if t.endswith("/$events")]
    assert events == [[event]]
    assert s.balanced and s.written == s.produced == len(expected) + 1 and s.pending == 0
    # one message per series per writer batch, not per sample
    assert len(recorder.messages) < len(expected) / 2


async def test_a_killed_broker_loses_nothing_and_the_writer_replays_in_order(
    tmp_path: Path, broker: MosquittoServer, recorder: Recorder
) -> None:
    writer = make_writer(publish_config(broker.url, tmp_path / "spool"))
    await writer.start()
    batches: list[SampleBatch] = []
    t0 = now_ns()
    try:
        feeding = asyncio.create_task(feed(writer, batches, 350, t0, 0.02))  # ~7 s of data
        await asyncio.sleep(1.5)
        broker.kill()  # SIGKILL, mid-stream
        await asyncio.sleep(3.0)
        outage = writer.stats()
        broker.restart()  # same port, same saved sessions
        await feeding
        assert await writer.flush(60), "the spool did not drain after the broker came back"
        expected = expected_of(batches)
        done = await recorder.wait_until(
            lambda: len(first_arrivals(recorder.messages)[0]) >= len(expected), 60
        )
        s = writer.stats()
    finally:
        await writer.stop()
    seen, order, repeats = first_arrivals(recorder.messages)
    print(
        f"\n[mqtt kill] produced={s.produced} written={s.written} spooled={s.spooled} replayed={s.replayed} "
        f"retries={s.retries}; received {len(seen)} distinct samples, {repeats} repeats, "
        f"recorder connected {recorder.connects}x"
    )
    assert outage.state == WriterState.OUTAGE and outage.pending > 0
    assert done, f"missing {len(expected) - len(seen)} of {len(expected)} samples"
    assert seen == expected  # every sample at least once, with its value
    assert_in_order(order)
    assert s.balanced and s.pending == 0 and s.dropped_total == 0 and s.quarantined == 0
    assert s.written == s.produced == len(expected)
    assert s.spooled > 0 and s.replayed > 0
    assert recorder.connects >= 2


async def test_a_hung_broker_times_out_and_delivery_resumes_when_it_answers(
    tmp_path: Path, broker: MosquittoServer, recorder: Recorder
) -> None:
    writer = make_writer(publish_config(broker.url, tmp_path / "spool", timeout_s=1.0))
    await writer.start()
    batches: list[SampleBatch] = []
    t0 = now_ns()
    try:
        await feed(writer, batches, 10, t0, 0.01)
        assert await writer.flush(10)
        broker.pause()  # SIGSTOP: connections stay open, nothing is acknowledged
        await feed(writer, batches, 5, t0 + 10**12, 0.01)  # later timestamps: on the wire when it hangs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while writer.stats().state != WriterState.OUTAGE and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await feed(writer, batches, 10, t0 + 2 * 10**12, 0.01)  # accepted during the outage: spooled
        hung = writer.stats()
        broker.resume()
        assert await writer.flush(30)
        expected = expected_of(batches)
        done = await recorder.wait_until(
            lambda: len(first_arrivals(recorder.messages)[0]) >= len(expected), 30
        )
        s = writer.stats()
    finally:
        broker.resume()
        await writer.stop()
    seen, order, _ = first_arrivals(recorder.messages)
    assert hung.state == WriterState.OUTAGE and "acknowledgement" in hung.last_error
    assert hung.written < hung.produced
    assert done and seen == expected
    assert_in_order(order)
    assert s.balanced and s.written == s.produced and s.replayed > 0


async def test_publishes_the_broker_refuses_stay_spooled_and_are_never_counted_written(
    tmp_path: Path,
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")  # anonymous clients may publish under allowed/ only
    server = start_mosquitto(tmp_path / "mosquitto", extra=f"acl_file {acl}\n")
    try:
        writer = make_writer(publish_config(server.url, tmp_path / "spool"))  # publishes under test-uns/
        await writer.start()
        try:
            # one series, so one message a batch: Mosquitto 2.0 answers a refused publish with its
            # PUBACK (reason 135) and then drops the connection, which would cut off later messages
            t = now_ns()
            writer.submit(SampleBatch.from_columns([SERIES[0]], [0] * 5, range(t, t + 5), [1.0] * 5))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while writer.stats().retries < 3 and loop.time() < deadline:
                await asyncio.sleep(0.05)
            s = writer.stats()
        finally:
            await writer.stop(timeout_s=0.5)
    finally:
        server.stop()
    assert s.retries >= 3 and "Not authorized" in s.last_error
    assert s.written == 0 and s.pending == s.produced == 5 and s.balanced


async def test_a_name_without_a_topic_is_quarantined_and_the_rest_published(
    tmp_path: Path, broker: MosquittoServer, recorder: Recorder
) -> None:
    writer = make_writer(publish_config(broker.url, tmp_path / "spool"))
    await writer.start()
    t = now_ns()
    good = (SERIES[0][0], "ok")
    batch = SampleBatch.from_columns(
        [good, (SERIES[0][0], "bad name")], [0, 1, 0, 1], [t, t, t + 1, t + 1], [1.0, 2.0, 3.0, 4.0]
    )
    try:
        writer.submit(batch)
        assert await writer.flush(20)
        arrived = await recorder.wait_until(lambda: len(first_arrivals(recorder.messages)[0]) >= 2, 20)
        s = writer.stats()
    finally:
        await writer.stop()
    assert arrived
    assert first_arrivals(recorder.messages)[0] == {(*good, t): 1.0, (*good, t + 1): 3.0}
    assert s.quarantined == 2 and s.written == 2 and s.balanced
    lines = (tmp_path / "spool" / "quarantine.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("bad name" in line for line in lines)


# -- shopfloor acquire --publish -----------------------------------------------------------------
async def test_acquire_publishes_the_virtual_plants_signals_under_the_documented_topics(
    tmp_path: Path, broker: MosquittoServer
) -> None:
    plant = default_plant(seed=4, start_ns=now_ns())
    port = free_port()
    doc = json.loads(json.dumps(plant_config(plant, opcua_port=port)))
    for src in doc["sources"]:
        src["enabled"] = src["connector"] == "opcua"
    doc["historian"] = {"url": f"sqlite:///{tmp_path / 'h.db'}", "spool": {"dir": str(tmp_path / "spool")}}
    # the config's broker URL is a dead one: --publish overrides it
    doc["publish"] = {"url": "mqtt://127.0.0.1:9", "topic_prefix": "plant", "health_interval_s": 1}
    config = tmp_path / "plant.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    expected = {(a["path"], s["name"]) for a in doc["assets"] for s in a["signals"]}

    rec = Recorder(broker.port, "plant/#", client_id="acquire-test")
    await rec.start()
    simulator = SimulatorService(
        plant, SimulatorOptions(speed=30, opcua_port=port, modbus_port=0, tick_s=0.2)
    )
    await simulator.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "shopfloor.app.cli", "acquire", "--config", str(config), "--publish", broker.url,
           "--no-historian", "--duration", "8", "--status-every", "0"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        tree = TopicTree("plant")
        got: set[tuple[str, str]] = set()
        await rec.wait_until(lambda: len(rec.messages) > 0, 10)
        for topic, payload in rec.messages:
            target = tree.parse(topic)
            if target.signal is not None:
                decode_samples(topic, payload, tree)  # every message is a valid payload
                got.add((target.asset, target.signal))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await simulator.stop()
        await rec.stop()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    stopped = next(ln for ln in text.splitlines() if "stopped (mqtt-publisher):" in ln)
    assert "pending=0" in stopped and "dropped=0" in stopped and "quarantined=0" in stopped, stopped
    assert "stopped: produced=" not in text  # --no-historian: no historian writer ran
    assert not (tmp_path / "h.db").exists()
    assert len(expected) > 200
    assert expected <= got, f"missing: {sorted(expected - got)[:10]}"
    # the publisher's own counters travel the same way, as the documented system asset of this edge
    own = {
        a for a, sig in got if sig == "written" and a.startswith(f"{SITE}/_system/shopfloor/mqtt-publisher/")
    }
    assert len(own) == 1, own


# -- credentials -----------------------------------------------------------------------------------
async def test_password_and_client_certificate_authentication_and_no_secret_in_the_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    password = "correct horse battery staple 7"
    (tmp_path / "passwords").write_text(password_file_line("edge-7", password))
    tls = make_tls_files(tmp_path / "pki", client_name="edge-cert-1")
    tls_port = free_port()
    extra = f"""password_file {tmp_path / "passwords"}
listener {tls_port} 127.0.0.1
cafile {tls["ca"]}
certfile {tls["server_cert"]}
keyfile {tls["server_key"]}
require_certificate true
use_identity_as_username true
"""
    server = start_mosquitto(tmp_path / "mosquitto", extra=extra)
    monkeypatch.setenv("SHOPFLOOR_TEST_MQTT_PASSWORD", password)
    caplog.set_level(logging.DEBUG)
    batch = SampleBatch.from_columns([SERIES[0]], [0], [now_ns()], [1.0])
    try:
        good = MqttPublisher(
            PublishConfig(
                url=f"mqtt://edge-7@127.0.0.1:{server.port}", password_env="SHOPFLOOR_TEST_MQTT_PASSWORD"
            ),
            site=SITE,
        )
        await good.send(good.encode_samples(batch))
        await good.close()
        (tmp_path / "wrong").write_text("not the password\n")
        wrong = MqttPublisher(
            PublishConfig(
                url=f"mqtt://127.0.0.1:{server.port}", username="edge-7", password_file=tmp_path / "wrong"
            ),
            site=SITE,
        )
        with pytest.raises(StoreUnavailable, match=r"Not authorized|Bad user") as refused:
            await wrong.send(wrong.encode_samples(batch))
        assert not refused.value.unreachable  # the broker answered: backoff, not fast probing
        assert not await wrong.ping()

        tls_cfg = {"ca_file": tls["ca"], "cert_file": tls["client_cert"], "key_file": tls["client_key"]}
        secure = MqttPublisher(PublishConfig(url=f"mqtts://127.0.0.1:{tls_port}", tls=tls_cfg), site=SITE)
        await secure.send(secure.encode_samples(batch))
        await secure.close()
        no_cert = MqttPublisher(
            PublishConfig(url=f"mqtts://127.0.0.1:{tls_port}", tls={"ca_file": tls["ca"]}, timeout_s=2),
            site=SITE,
        )
        assert not await no_cert.ping()  # the broker requires a client certificate
        await no_cert.close()
    finally:
        server.stop()
    log_text = server.log_tail(100_000)  # complete once it stopped (it buffers its stdout)
    assert "New client connected" in log_text and "u'edge-7'" in log_text  # the password user
    assert "u'edge-cert-1'" in log_text  # the certificate's name became the user name
    assert password not in caplog.text and "not the password" not in caplog.text
