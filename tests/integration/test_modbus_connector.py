"""The Modbus connector against the simulator's real pymodbus server and a frame-breaking server.

Values, word/byte orders, connection drops, exception codes, malformed frames, write refusal and
log-once behaviour; every server started here is stopped in the test's own teardown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from modbus_support import CNC, STEP  # the plant itself is served by the shared modbus_plant fixture

from connectors.modbus.config import ModbusSettings, ModbusTag
from connectors.modbus.connector import ModbusConnector
from plant_simulator.codes import Status
from plant_simulator.config_gen import plant_config
from plant_simulator.faults import BAD_REGISTER, MalformedModbusServer, ModbusFaults, good_bit, good_register
from plant_simulator.register_map import AssetMap
from shopfloor.batch import SampleBatch
from shopfloor.connector import SourceContext
from shopfloor.model import EventKind, Quality
from shopfloor.plugins import load
from shopfloor.testing.servers import free_port

WRITE_CODES = {5, 6, 15, 16, 22, 23}


class ListSink:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []
        self.events: list[Any] = []

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def emit_events(self, events: Any) -> None:
        self.events.extend(events)

    def all(self) -> SampleBatch:
        return SampleBatch.concat(self.batches)


async def until(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Bounded wait for a condition (a bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def connector(port: int, tags: list[dict[str, Any]], **settings: Any) -> ModbusConnector:
    s = ModbusSettings.model_validate({"host": "127.0.0.1", "port": port, **settings})
    return ModbusConnector(SourceContext("plc", s, [ModbusTag.model_validate(t) for t in tags]))


def latest(sink: ListSink) -> dict[tuple[str, str], tuple[float, int]]:
    out = {}
    for s in sink.all().to_samples():
        out[(s.asset, s.signal)] = (s.value, int(s.quality))
    return out


def test_the_entry_point_loads_the_connector() -> None:
    cls = load("modbus")
    assert cls is ModbusConnector and cls.spec.name == "modbus"


async def test_every_mapped_signal_arrives_with_the_simulator_value(modbus_plant) -> None:
    plant, maps, srv = modbus_plant
    src = next(s for s in plant_config(plant, modbus_port=srv.port)["sources"] if s["connector"] == "modbus")
    tags = [dict(t) for t in src["tags"]]
    # plus the other tables and word orders the simulator serves: CDAB floats and x-scaled int16 in the
    # input registers, the uint64 clock, coils and discrete inputs
    for m in maps:
        for e in m.entries:
            if e.table == "input" and not e.signal.startswith("_"):
                words = {"float32": "f32", "int16": "i16", "uint32": "u32"}[e.type]
                tags.append(
                    dict(
                        asset=m.asset,
                        signal=f"{e.signal}.ir_{words}",
                        unit_id=m.unit_id,
                        table="input",
                        address=e.address,
                        type=e.type,
                        word_order=e.word_order,
                        scale=1.0 / e.scale,
                    )
                )
            elif e.table in ("coil", "discrete"):
                tags.append(
                    dict(
                        asset=m.asset,
                        signal=f"{e.signal}.{e.table}",
                        unit_id=m.unit_id,
                        table=e.table,
                        address=e.address,
                        type="bool",
                    )
                )
        tags.append(
            dict(
                asset=m.asset,
                signal="_sim_time_ms",
                unit_id=m.unit_id,
                table="holding",
                address=0,
                type="uint64",
            )
        )
    assert (
        ModbusSettings.model_validate(src["settings"]).port == srv.port
    )  # the generated settings as they are
    c = connector(srv.port, tags, timeout_s=src["settings"]["timeout_s"], groups={"default": "100ms"})
    sink = ListSink()
    await c.start(sink)
    try:
        await until(
            lambda: len(latest(sink)) == len(tags) and c.health().samples >= len(tags), "one full poll"
        )
    finally:
        await c.stop()
    assert sum(d["requests_per_poll"] for d in c.describe()["groups"].values()) <= 4 * len(maps)
    got = latest(sink)
    blk = plant.block(STEP // 3600)
    j = STEP % 3600
    checked = 0
    for m in maps:
        vals, status = blk.values[m.asset][:, j], blk.status[m.asset][:, j]
        idx = {s.name: i for i, s in enumerate(m.specs)}
        for sig, (v, q) in ((k[1], x) for k, x in got.items() if k[0] == m.asset):
            base = sig.split(".")[0]
            if sig == "_sim_time_ms":
                assert v == (plant.start_ns // 10**9 + STEP) * 1000
            elif sig.endswith((".coil", ".discrete")):
                if sig.endswith(".discrete"):
                    assert v == float(status[idx[sig[: -len(".fault.discrete")]]] != Status.GOOD)
                elif base == "_alarm":
                    assert v == float(vals[idx["alarm"]] > 0.5)
                else:
                    assert v == float(int(vals[idx["state"]]) == m.entry("coil", base).address + 1)
                assert q == Quality.GOOD
            else:
                i = idx[base]
                spec = m.specs[i]
                bad = status[i] == Status.BAD_SENSOR_FAILURE
                if sig == base:  # the generated holding-register tag, with its status register
                    expect_q = {0: 0, 1: 1, 2: 1, 3: 2}[int(status[i])]
                    assert q == expect_q, (m.asset, sig)
                if bad and sig.endswith("ir_i16"):  # int16 has no NaN: -32768 is the documented marker
                    assert v == pytest.approx(-32768 / spec.int16_scale) and q == Quality.GOOD
                elif bad:
                    assert math.isnan(v) and q == Quality.BAD
                elif sig.endswith("ir_i16"):
                    assert v == pytest.approx(
                        max(-32767, min(32767, round(vals[i] * spec.int16_scale))) / spec.int16_scale
                    )
                elif spec.counter:
                    assert v == pytest.approx(
                        round(vals[i] * spec.counter_scale) / spec.counter_scale, rel=1e-12
                    )
                elif spec.is_float:
                    assert v == pytest.approx(vals[i], rel=1e-6, abs=1e-6), (m.asset, sig)
                else:
                    assert v == vals[i], (m.asset, sig)
            checked += 1
    assert checked == len(tags)
    assert got[(CNC, "spindle_temp")][1] == Quality.BAD and got[(CNC, "coolant_temp")][1] == Quality.UNCERTAIN
    assert not (WRITE_CODES & set(srv.function_codes))
    assert set(srv.function_codes) <= {1, 2, 3, 4}


async def test_all_four_word_and_byte_orders(modbus_plant) -> None:
    _, maps, srv = modbus_plant
    values = {
        "float32": -1234.5678,
        "int32": -123456789,
        "uint32": 3_000_000_000,
        "float64": math.e,
        "int64": -(2**40) - 3,
        "uint64": 2**52 + 12345,
    }
    fmt = {"float32": "f", "int32": "i", "uint32": "I", "float64": "d", "int64": "q", "uint64": "Q"}
    tags, expect = [], {}
    hr = {m.unit_id: list(srv.snap[m.unit_id].hr) for m in maps[:2]}
    addr = {m.unit_id: 0 for m in maps[:2]}
    for typ, v in values.items():
        m = maps[0] if struct.calcsize(fmt[typ]) == 4 else maps[1]  # 32-bit on unit 1, 64-bit on unit 2
        for wo in ("big", "little"):
            for bo in ("big", "little"):
                raw = struct.pack(">" + fmt[typ], v)
                words = [raw[k : k + 2] for k in range(0, len(raw), 2)]
                words = words[::-1] if wo == "little" else words
                words = [w[::-1] for w in words] if bo == "little" else words
                regs = [int.from_bytes(w, "big") for w in words]
                a = addr[m.unit_id]
                hr[m.unit_id][a : a + len(regs)] = regs
                sig = f"{typ}_{wo}_{bo}"
                tags.append(
                    dict(
                        asset=m.asset,
                        signal=sig,
                        unit_id=m.unit_id,
                        table="holding",
                        address=a,
                        type=typ,
                        word_order=wo,
                        byte_order=bo,
                    )
                )
                expect[(m.asset, sig)] = float(np.array(v, dtype=">" + fmt[typ]).astype(np.float64))
                addr[m.unit_id] += len(regs)
    for m in maps[:2]:
        assert addr[m.unit_id] <= m.hr_words
        srv.snap[m.unit_id].hr = hr[m.unit_id]  # what the simulator serves until the next publish
    c = connector(srv.port, tags, groups={"default": "50ms"})
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: len(latest(sink)) == len(tags), "all orders")
    finally:
        await c.stop()
    got = latest(sink)
    for key, v in expect.items():
        assert got[key] == (v, Quality.GOOD), key
    assert len({v for v, _ in got.values()}) == len(values)  # 4 orders of one value decode alike


def sim_tags(maps: list[AssetMap], units: int) -> list[dict[str, Any]]:
    tags = []
    for m in maps[:units]:
        for s in m.specs:
            if s.is_float:
                e = m.entry("holding", s.name)
                tags.append(
                    dict(
                        asset=m.asset,
                        signal=s.name,
                        unit_id=m.unit_id,
                        table="holding",
                        address=e.address,
                        type="float32",
                    )
                )
    return tags


async def test_server_stop_restart_and_dropped_connections(modbus_plant) -> None:
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    tags = sim_tags(maps, 3)
    c = connector(
        srv.port,
        tags,
        groups={"default": "50ms"},
        timeout_s=0.5,
        retries=0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.4,
    )
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().samples >= 2 * len(tags), "first data")
        # 1. the server goes away
        await faults.stop()
        await until(lambda: not c.health().connected, "loss detected")
        lost_batches = len(sink.batches)
        attempts0 = c.connect_attempts
        await until(lambda: c.connect_attempts >= attempts0 + 3, "reconnect attempts while down")
        assert c.connect_attempts - attempts0 < 100  # backoff, not a busy loop
        down = SampleBatch.concat(sink.batches[lost_batches - 1 :])
        bad_once = sink.batches[lost_batches - 1]
        assert len(bad_once) == len(tags) and (bad_once.quality == Quality.BAD).all()
        assert np.isnan(bad_once.value).all()
        assert len(down) == len(tags)  # marked Bad once; nothing (and nothing Good) while down
        assert not [e for e in sink.events if e.kind == EventKind.GAP]
        # 2. it comes back: reconnect, data resumes, one gap event per asset
        good_before = c.health().samples
        await faults.restart()
        await until(lambda: c.health().samples >= good_before + len(tags), "data after restart")
        gaps = [e for e in sink.events if e.kind == EventKind.GAP]
        assert sorted(e.asset for e in gaps) == sorted({t["asset"] for t in tags})
        assert gaps[0].data["from_ns"] <= gaps[0].data["to_ns"]
        h = c.health()
        assert h.connected and h.reconnects == 1 and h.gaps == 1
        assert h.errors.get("connection_lost", 0) == 1 and h.errors.get("connect", 0) >= 3
        # 3. the server drops every connection but keeps listening
        await until(lambda: faults.drop_connections() > 0, "a connection to drop")
        await until(lambda: c.health().gaps == 2, "second gap")
        await until(lambda: c.health().connected, "reconnected")
        n = c.health().samples
        await until(lambda: c.health().samples >= n + len(tags), "data after drop")
    finally:
        await c.stop()
    assert c.health().reconnects == 2
    assert not (WRITE_CODES & set(srv.function_codes))


async def test_exception_codes_mark_only_their_tags_bad(modbus_plant) -> None:
    _, maps, srv = modbus_plant
    faults = ModbusFaults(srv)
    tags = sim_tags(maps, 4)
    faults.answer_exception(2, unit_id=maps[1].unit_id)  # illegal data address
    faults.answer_exception(0x0B, unit_id=maps[3].unit_id)  # gateway target failed to respond
    c = connector(srv.port, tags, groups={"default": "50ms"})
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: len(sink.batches) >= 3, "three polls")
    finally:
        await c.stop()
    allb = sink.all()
    bad_units = {maps[1].asset, maps[3].asset}
    for s in allb.to_samples():
        if s.asset in bad_units or (s.asset, s.signal) == (CNC, "spindle_temp"):
            assert s.quality == Quality.BAD and math.isnan(s.value)
        else:
            assert s.quality == Quality.GOOD and not math.isnan(s.value)
    h = c.health()
    assert h.errors["exception_02"] >= 3 and h.errors["exception_11"] >= 3
    assert h.reconnects == 0 and "connection_lost" not in h.errors  # not a connection problem
    faults.clear()


async def test_malformed_frames_are_never_accepted() -> None:
    broken = [
        "wrong_tid",
        "tid_zero",
        "wrong_unit",
        "bad_protocol",
        "short",
        "wrong_byte_count",
        "odd_byte_count",
        "wrong_count",
        "wrong_function",
        "undecodable",
        "exception",
        "delay",
        "close",
    ]
    modes = [m for b in broken for m in ("ok", b)]
    server = MalformedModbusServer(modes=modes, delay_s=0.3)
    await server.start()
    tags = [
        dict(
            asset="test/line/cell/plc", signal=f"hr{a}", unit_id=7, table="holding", address=a, type="uint16"
        )
        for a in (*range(0, 10), *range(200, 210))
    ]
    tags += [
        dict(asset="test/line/cell/plc", signal=f"c{a}", unit_id=7, table="coil", address=a, type="bool")
        for a in range(0, 12)
    ]
    c = connector(
        server.port,
        tags,
        groups={"default": "20ms"},
        timeout_s=0.15,
        retries=0,
        reconnect_initial_s=0.02,
        reconnect_max_s=0.1,
    )
    sink = ListSink()
    try:
        await c.start(sink)
        await until(lambda: server.requests >= 3 * len(modes), "every mode served", timeout=30)
    finally:
        await c.stop()
        await server.stop()
    assert all(server.served[m] >= 1 for m in broken)
    allb = sink.all()
    good = allb.take(allb.quality == Quality.GOOD)
    assert len(good) > 0
    wrong = 0
    for s in good.to_samples():
        a = int(s.signal[2:] if s.signal.startswith("hr") else s.signal[1:])
        expect = good_register(a) if s.signal.startswith("hr") else float(good_bit(a))
        wrong += s.value != expect
    assert wrong == 0
    assert not (allb.value == BAD_REGISTER).any()
    errors = c.health().errors
    print("malformed-frame errors by kind:", dict(sorted(errors.items())))
    assert errors.get("malformed", 0) >= 5  # byte counts, counts, function, tid 0, undecodable
    assert errors.get("timeout", 0) >= 3  # wrong tid/unit, bad protocol id, short frame, late answer
    assert errors.get("exception_02", 0) >= 1
    assert errors.get("wrong_transaction_id", 0) >= 1 and errors.get("bad_protocol_id", 0) >= 1
    assert errors.get("wrong_unit_id", 0) >= 1
    assert c.health().reconnects >= 1  # "close" drops the link; it comes back
    assert set(server.function_codes) <= {1, 3}


async def test_write_to_a_read_only_tag_is_refused_and_nothing_is_sent(modbus_plant) -> None:
    _, maps, srv = modbus_plant
    m = maps[2]
    e = m.entry("holding", "_command")
    tags = [
        dict(
            asset=m.asset,
            signal="spindle_speed",
            unit_id=m.unit_id,
            table="holding",
            address=m.entry("holding", "spindle_speed").address,
            type="float32",
        ),
        dict(
            asset=m.asset,
            signal="command",
            unit_id=m.unit_id,
            table="holding",
            address=e.address,
            type="uint16",
            writable=True,
        ),
        dict(asset=m.asset, signal="alarm_coil", unit_id=m.unit_id, table="coil", address=7, type="bool"),
    ]
    c = connector(srv.port, tags, groups={"default": "50ms"})
    sink = ListSink()
    await c.start(sink)
    try:
        await until(lambda: c.health().connected and len(sink.batches) >= 2, "polling")
        with pytest.raises(PermissionError, match="read-only"):
            await c.write((m.asset, "spindle_speed"), 1000.0)
        with pytest.raises(PermissionError):
            await c.write((m.asset, "alarm_coil"), 1)
        await until(lambda: len(sink.batches) >= 4, "more polls")
        assert not (WRITE_CODES & set(srv.function_codes)), srv.function_codes
        assert srv.writes == [] and c.writes_sent == 0
        # the explicit opt-in works, and is the only write the server ever sees
        await c.write((m.asset, "command"), 1)
    finally:
        await c.stop()
    assert [(w.unit_id, w.address, w.values, w.accepted) for w in srv.writes] == [(m.unit_id, 8, (1,), True)]
    assert sum(srv.function_codes[f] for f in WRITE_CODES) == 1


async def test_unreachable_device_logs_once_per_state_change(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="shopfloor")
    caplog.set_level(logging.INFO, logger="pymodbus")
    port = free_port()
    tags = [dict(asset="test/line/cell/plc", signal="r0", unit_id=1, table="holding", address=0)]
    c = connector(
        port, tags, groups={"default": "20ms"}, timeout_s=0.2, reconnect_initial_s=0.02, reconnect_max_s=0.05
    )
    sink = ListSink()
    server = MalformedModbusServer(modes=["ok"], port=port)
    await c.start(sink)
    try:
        # counted once each attempt has failed (connect_attempts counts an attempt when it begins)
        await until(lambda: c.health().errors.get("connect", 0) >= 8, "eight failed connects")
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in loud] == [
            f"source plc: unavailable (connect: cannot connect to 127.0.0.1:{port}); retrying with backoff"
        ]
        assert c.health().errors["connect"] >= 8
        await server.start()
        await until(lambda: c.health().samples >= 3, "data once the device is up")
        await server.stop()
        await until(lambda: not c.health().connected, "loss")
        attempts = c.connect_attempts
        await until(lambda: c.connect_attempts >= attempts + 5, "five more failed connects")
        await server.start()
        await until(lambda: c.health().reconnects == 1 and c.health().gaps == 1, "restored, gap recorded")
    finally:
        await c.stop()
        await server.stop()
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(msgs) == 4, msgs
    assert (
        "unavailable" in msgs[0] and "unavailable" in msgs[1] and msgs[2] == "source plc: connection restored"
    )
    assert msgs[3].startswith("source plc: gap of ") and "recorded for 1 assets (connection_lost: " in msgs[3]
    assert [
        r.getMessage() for r in caplog.records if r.name == "shopfloor.source" and r.levelno == logging.INFO
    ] == ["source plc: connected"]
