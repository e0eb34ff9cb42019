"""How the Modbus connector recovers, and says so: gaps logged, a returning device probed, refused addresses
isolated (exception 02), health figures that agree with what the sink received.

Against the simulator's real pymodbus server (the ``modbus_plant`` fixture) and the frame-breaking server of plant_simulator/faults.py;
every server started here is stopped in the test's own teardown. Waits are bounds, never asserted durations.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from test_modbus_connector import STEP, WRITE_CODES, ListSink, connector, sim_tags, until

from plant_simulator.config_gen import plant_config
from plant_simulator.faults import MalformedModbusServer, ModbusFaults
from plant_simulator.plant import Plant
from plant_simulator.register_map import AssetMap
from shopfloor.model import EventKind, Quality
from shopfloor.testing.servers import free_port

MILL = "qijiang/copper/hot-rolling/mill-1"  # unit 10: holding registers 0..81 only


def good_since(sink: ListSink, first_batch: int) -> int:
    return sum(int((b.quality == Quality.GOOD).sum()) for b in sink.batches[first_batch:])


def mill_tags(plant: Plant, port: int) -> list[dict[str, Any]]:
    """The generated tags of the hot-rolling mill (one merged read 10..81) plus one at 82, past its map."""
    src = next(s for s in plant_config(plant, modbus_port=port)["sources"] if s["connector"] == "modbus")
    tags = [dict(t) for t in src["tags"] if t["asset"] == MILL]
    tags.append(dict(asset=MILL, signal="extra", unit_id=10, table="holding", address=82, type="float32"))
    return tags


def expected(plant: Plant, maps: list[AssetMap], asset: str) -> dict[str, tuple[float, int]]:
    """signal -> (value, quality) the simulator serves at STEP for the generated holding-register tags."""
    m = next(m for m in maps if m.asset == asset)
    blk = plant.block(STEP // 3600)
    vals, status = blk.values[asset][:, STEP % 3600], blk.status[asset][:, STEP % 3600]
    out = {}
    for i, spec in enumerate(m.specs):
        q = {0: 0, 1: 1, 2: 1, 3: 2}[int(status[i])]
        v = round(vals[i] * spec.counter_scale) / spec.counter_scale if spec.counter else float(vals[i])
        out[spec.name] = (math.nan if q == 2 and spec.is_float else v, q)
    return out


# -- a. gaps are logged -------------------------------------------------------------------------------
async def test_every_gap_is_logged_once_as_a_warning_and_events_carry_their_key(modbus_plant, caplog) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor")
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    tags = sim_tags(maps, 2)
    m = maps[0]
    tags.append(  # a string tag over float registers: its text changes with the values
        dict(
            asset=m.asset,
            signal="text",
            unit_id=m.unit_id,
            table="holding",
            address=10,
            type="string",
            length=8,
        )
    )
    c = connector(
        srv.port,
        tags,
        groups={"default": "50ms"},
        timeout_s=0.5,
        retries=0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().connected and len(sink.batches) >= 2, "first data")
        for n in (1, 2):
            await until(lambda: faults.drop_connections() > 0, "a connection to drop")
            await until(lambda n=n: c.health().gaps == n, f"gap {n}")  # type: ignore[misc]
    finally:
        await c.stop()
    assets = {t["asset"] for t in tags}
    lines = [r for r in caplog.records if "gap of" in r.getMessage()]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    for r in lines:
        assert r.levelno == logging.WARNING
        assert (
            r.getMessage().startswith("source plc: gap of ")
            and f"recorded for {len(assets)} assets" in r.getMessage()
        )
    gaps = [e for e in sink.events if e.kind == EventKind.GAP]
    assert len(gaps) == 2 * len(assets) and {e.key for e in gaps} == {"plc"}
    assert all(e.data["reason"].startswith("connection_lost") for e in gaps)
    texts = [e for e in sink.events if e.kind == EventKind.SYSTEM]
    assert texts and {e.key for e in texts} == {"text"}


# -- b. a returning device is probed ------------------------------------------------------------------
async def test_a_restarted_device_is_back_before_the_backoff_would_allow_an_attempt(modbus_plant) -> None:
    """reconnect_initial_s 60: the first attempt after a loss waits at least 30 s (equal jitter); the
    default probe (every 1 s) sees the port closed, then open again, and reconnects at once.
    """
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    tags = sim_tags(maps, 2)
    c = connector(
        srv.port,
        tags,
        groups={"default": "50ms"},
        timeout_s=0.5,
        retries=0,
        reconnect_initial_s=60,
        reconnect_max_s=60,
    )
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().connected and good_since(sink, 0) > 0, "first data")
        await faults.stop()
        await until(lambda: not c.health().connected, "loss detected")
        attempts = c.connect_attempts
        await until(lambda: c.describe()["probes"]["refused"] >= 1, "a probe that finds the port closed")
        await faults.restart()
        n = len(sink.batches)
        # bounded well below the 30 s the backoff waits at the least: only the probe can bring it back
        await until(lambda: good_since(sink, n) >= len(tags), "data after the restart", timeout=20)
    finally:
        await c.stop()
    h = c.health()
    assert c.connect_attempts == attempts + 1  # one real attempt, the one the probe brought forward
    assert h.reconnects == 1 and h.gaps == 1
    assert c.describe()["probes"]["sent"] >= 2
    assert not (WRITE_CODES & set(srv.function_codes))


async def test_the_probe_does_not_bring_attempts_forward_for_a_peer_that_accepts_and_drops() -> None:
    """A peer whose port never closes (it accepts, then drops each connection) gets no early attempt:
    the backoff (here 0.5-1 s per attempt) governs, however often the probe (every 50 ms) finds it open.
    """
    server = MalformedModbusServer(modes=["close"], port=free_port())
    await server.start()
    tags = [dict(asset="test/line/cell/plc", signal="r0", unit_id=1, table="holding", address=0)]
    c = connector(
        server.port,
        tags,
        groups={"default": "20ms"},
        timeout_s=0.2,
        reconnect_initial_s=1.0,
        reconnect_max_s=1.0,
        probe_interval_s=0.05,
    )
    try:
        await c.start(ListSink())
        await until(lambda: c.describe()["probes"]["sent"] >= 40, "forty probes", timeout=30)
    finally:
        await c.stop()
        await server.stop()
    probes = c.describe()["probes"]
    assert probes["refused"] == 0  # the port was open every time
    # each backoff wait of >= 0.5 s holds about ten probes; five per attempt is a generous bound
    assert c.connect_attempts * 5 <= probes["sent"] + 5, (c.connect_attempts, probes)
    assert c.health().errors.get("connection_lost", 0) >= 1


# -- c. refused addresses ----------------------------------------------------------------------------
async def test_one_refused_address_spoils_only_its_own_tag(modbus_plant, caplog) -> None:
    """The mill's generated tags are one read 10..81; a tag at 82..83 (past its map) merges into it
    (10..83) and the device answers exception 02 for the whole request.
    """
    caplog.set_level(logging.INFO, logger="shopfloor")
    plant, maps, srv = modbus_plant
    tags = mill_tags(plant, srv.port)
    c = connector(srv.port, tags, groups={"default": "50ms"})
    assert c.describe()["groups"]["default"]["requests_per_poll"] == 1  # the merged read 10..83
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().failed_items, "the refused tag listed")
        split_at = len(sink.batches)
        errors_at_split = c.health().errors["exception_02"]
        await until(lambda: len(sink.batches) >= split_at + 5, "five polls after the split")
    finally:
        await c.stop()
    h = c.health()
    item = f"{MILL}:extra"
    assert list(h.failed_items) == [item]
    assert "exception 02" in h.failed_items[item] and "ILLEGAL DATA ADDRESS" in h.failed_items[item]
    assert "holding 82..83" in h.failed_items[item]
    assert h.errors["exception_02"] == errors_at_split  # the refused range is not asked for every poll
    want = expected(plant, maps, MILL)
    after = sink.batches[split_at:]
    for b in after:
        for s in b.to_samples():
            if s.signal == "extra":
                assert s.quality == Quality.BAD and math.isnan(s.value)
                continue
            v, q = want[s.signal]
            assert int(s.quality) == q, s
            if math.isnan(v):
                assert math.isnan(s.value), s
            else:
                assert s.value == pytest.approx(v, rel=1e-6, abs=1e-6), s
    assert {s.signal for s in after[-1].to_samples()} == {t["signal"] for t in tags}
    split = [
        r.getMessage()
        for r in caplog.records
        if "exception 02" in r.getMessage() and "now read" in r.getMessage()
    ]
    assert len(split) == 1 and "holding 82..83" in split[0], split
    failed = [r for r in caplog.records if "not delivering" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    d = c.describe()["groups"]["default"]
    # the part that answered (10..81) is read as one request again; 82..83 is not sent
    assert d["requests_per_poll"] == 1 and d["registers_per_poll"] == 72
    assert d["refused"] == {"unit 10 holding 82..83": [item]}
    assert set(srv.function_codes) <= {1, 2, 3, 4}


async def test_a_refused_tag_is_restored_once_the_device_answers_again(modbus_plant, caplog) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor")
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    m = maps[0]
    tags = [t for t in sim_tags(maps, 1) if t["signal"] != "spindle_temp"]  # (it has a sensor fault)
    power = m.entry("holding", "power").address
    rule = faults.answer_exception(2, unit_id=m.unit_id, table="holding", addresses=range(power, power + 2))
    c = connector(srv.port, tags, groups={"default": "50ms"}, refused_retry_s=0.3)
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().failed_items, "power listed as failed")
        n = len(sink.batches)
        await until(lambda: rule.hits >= 4 and len(sink.batches) >= n + 3, "re-reads of the refused range")
        assert c.health().failed_items == {f"{m.asset}:power": c.health().failed_items[f"{m.asset}:power"]}
        for b in sink.batches[n:]:
            q = {s.signal: s.quality for s in b.to_samples()}
            assert q.pop("power") == Quality.BAD and set(q.values()) == {Quality.GOOD}, q
        faults.clear()
        await until(lambda: not c.health().failed_items, "power restored")
        n = len(sink.batches)
        await until(lambda: len(sink.batches) >= n + 3, "polls after the restore")
    finally:
        await c.stop()
    for b in sink.batches[n:]:
        assert (b.quality == Quality.GOOD).all() and len(b) == len(tags)
    restored = [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
    assert restored == [f"source plc: item {m.asset}:power restored"]
    assert c.describe()["groups"]["default"]["requests_per_poll"] == 1  # merged again
    assert c.describe()["groups"]["default"]["refused"] == {}


async def test_a_refused_hole_between_tags_splits_the_read_but_fails_no_tag(modbus_plant, caplog) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor")
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    m = maps[0]
    tags = [t for t in sim_tags(maps, 1) if t["signal"] in ("spindle_speed", "spindle_load")]  # 10, 14
    faults.answer_exception(2, unit_id=m.unit_id, table="holding", addresses=range(12, 14))
    c = connector(srv.port, tags, groups={"default": "50ms"})
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.describe()["groups"]["default"]["requests_per_poll"] == 2, "the split")
        n = len(sink.batches)
        await until(lambda: len(sink.batches) >= n + 3, "polls after the split")
    finally:
        await c.stop()
        faults.clear()
    for b in sink.batches[n:]:
        assert (b.quality == Quality.GOOD).all() and len(b) == 2
    assert c.health().failed_items == {}
    split = [
        r.getMessage()
        for r in caplog.records
        if "exception 02" in r.getMessage() and "now read" in r.getMessage()
    ]
    assert len(split) == 1 and "no tag" in split[0], split


# -- d. health figures ---------------------------------------------------------------------------------
async def test_health_counts_agree_with_what_the_sink_received(modbus_plant) -> None:
    """Good, refused (Bad) and once-per-outage Bad samples: health().samples counts every sample the
    sink got, describe() splits them by quality, and a Bad-only batch is not a good read.
    """
    plant, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    tags = mill_tags(plant, srv.port) + sim_tags(maps[:1], 1)
    c = connector(
        srv.port,
        tags,
        groups={"default": "50ms"},
        timeout_s=0.5,
        retries=0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().failed_items and len(sink.batches) >= 5, "polls with a refused tag")
        await faults.stop()
        await until(lambda: not c.health().connected, "loss")
        marked = sink.batches[-1]
        assert len(marked) == len(tags) and (marked.quality == Quality.BAD).all()
        assert c.health().last_good_ns < int(marked.ts.min())  # the Bad batch is no good read
        await faults.restart()
        n = len(sink.batches)
        await until(lambda: good_since(sink, n) > 0 and c.health().gaps == 1, "data again")
    finally:
        await c.stop()
    h = c.health()
    allb = sink.all()
    by_q = {q.name.lower(): int((allb.quality == q).sum()) for q in Quality}
    assert h.samples == len(allb) == sum(len(b) for b in sink.batches)
    assert c.describe()["samples"] == by_q
    assert by_q["bad"] > len(tags) and by_q["good"] > 0  # refused every poll, and the outage mark
    assert list(h.failed_items) == [f"{MILL}:extra"]
