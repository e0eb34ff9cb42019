"""A pymodbus client reads every mapped address of the simulator and decodes the documented values."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator

import numpy as np
import pytest
from modbus_support import CNC, STEP
from pymodbus.client import AsyncModbusTcpClient

from plant_simulator.codes import Status
from plant_simulator.modbus_server import SimModbusServer
from plant_simulator.plant import Plant
from plant_simulator.register_map import INT16_BAD, AssetMap


@pytest.fixture
async def served(
    modbus_plant: tuple[Plant, list[AssetMap], SimModbusServer],
) -> AsyncIterator[tuple[Plant, list[AssetMap], SimModbusServer, AsyncModbusTcpClient]]:
    """The shared Modbus plant, and a bare pymodbus client connected to it."""
    plant, maps, srv = modbus_plant
    client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, timeout=3, retries=1)
    try:
        for _ in range(50):
            if await client.connect():
                break
        assert client.connected
        yield plant, maps, srv, client
    finally:
        client.close()


def decode(regs: list[int], typ: str, order: str) -> float:
    words = regs if order == "big" else list(reversed(regs))
    raw = struct.pack(">" + "H" * len(words), *words)
    return {
        "float32": lambda: struct.unpack(">f", raw)[0],
        "uint32": lambda: struct.unpack(">I", raw)[0],
        "uint64": lambda: struct.unpack(">Q", raw)[0],
        "int16": lambda: struct.unpack(">h", raw)[0],
        "uint16": lambda: struct.unpack(">H", raw)[0],
    }[typ]()


async def test_every_mapped_address_decodes_to_the_model_value(served) -> None:
    plant, maps, _, client = served
    blk = plant.block(STEP // 3600)
    j = STEP % 3600
    checked = 0
    for m in maps:
        vals, status = blk.values[m.asset][:, j], blk.status[m.asset][:, j]
        idx = {s.name: i for i, s in enumerate(m.specs)}
        hr = (await client.read_holding_registers(0, count=m.hr_words, device_id=m.unit_id)).registers
        ir = (await client.read_input_registers(0, count=m.ir_words, device_id=m.unit_id)).registers
        coils = (await client.read_coils(0, count=8, device_id=m.unit_id)).bits
        di = (await client.read_discrete_inputs(0, count=len(m.specs), device_id=m.unit_id)).bits
        for e in m.entries:
            if e.table in ("coil", "discrete"):
                bit = (coils if e.table == "coil" else di)[e.address]
                if e.table == "discrete":
                    assert bit == (status[e.address] != Status.GOOD)
                elif e.signal == "_alarm":
                    assert bit == (vals[idx["alarm"]] > 0.5)
                else:
                    assert bit == (int(vals[idx["state"]]) == e.address + 1)
                checked += 1
                continue
            regs = (hr if e.table == "holding" else ir)[e.address : e.address + e.words]
            got = decode(regs, e.type, e.word_order)
            if e.signal == "_sim_time_ms":
                assert got == (plant.start_ns // 10**9 + STEP) * 1000
            elif e.signal == "_state":
                assert got == vals[idx["state"]]
            elif e.signal == "_heartbeat":
                assert got == STEP
            elif e.signal.endswith(".status"):
                assert got == status[idx[e.signal[:-7]]]
            elif not e.signal.startswith("_"):
                i = idx[e.signal]
                bad = status[i] == Status.BAD_SENSOR_FAILURE
                if e.type == "float32":
                    assert math.isnan(got) if bad else got == pytest.approx(vals[i], rel=1e-6, abs=1e-6)
                elif e.type == "uint32":
                    assert got == round(vals[i] * e.scale)
                elif e.type == "int16":
                    if bad:
                        assert got == INT16_BAD
                    else:
                        assert got == max(-32767, min(32767, round(vals[i] * e.scale)))
            checked += 1
    assert checked > 1000


async def test_sensor_fault_markers(served) -> None:
    plant, maps, _, client = served
    m = maps[0]
    assert m.asset == CNC
    hr = (await client.read_holding_registers(0, count=m.hr_words, device_id=m.unit_id)).registers
    ir = (await client.read_input_registers(0, count=m.ir_words, device_id=m.unit_id)).registers
    e = m.entry("holding", "spindle_temp")
    assert math.isnan(decode(hr[e.address : e.address + 2], "float32", "big"))
    assert hr[m.entry("holding", "spindle_temp.status").address] == Status.BAD_SENSOR_FAILURE
    assert hr[m.entry("holding", "coolant_temp.status").address] == Status.UNCERTAIN_LAST_USABLE
    e16 = m.entry("input", "spindle_temp", "int16")
    assert decode([ir[e16.address]], "int16", "big") == INT16_BAD
    assert hr[6] & (1 << 9)  # any-sensor-fault bit
    di = (await client.read_discrete_inputs(0, count=len(m.specs), device_id=m.unit_id)).bits
    names = [s.name for s in m.specs]
    assert di[names.index("spindle_temp")] and di[names.index("coolant_temp")]
    assert not di[names.index("spindle_load")]
    assert np.isnan(plant.block(0).values[CNC][names.index("spindle_temp"), STEP])


async def test_writes_are_logged_and_only_the_command_word_is_writable(served) -> None:
    _, maps, srv, client = served
    ok = await client.write_register(8, 1, device_id=maps[2].unit_id)
    assert not ok.isError()
    bad = await client.write_register(12, 7, device_id=maps[2].unit_id)
    assert bad.isError()
    coil = await client.write_coil(0, True, device_id=maps[2].unit_id)
    assert coil.isError()
    assert [(w.address, w.accepted) for w in srv.writes] == [(8, True), (12, False), (0, False)]
    await srv.publish(
        STEP, 0, {m.asset: (np.zeros(len(m.specs)), np.zeros(len(m.specs), np.uint8)) for m in maps}
    )
    hr = (await client.read_holding_registers(8, count=1, device_id=maps[2].unit_id)).registers
    assert hr == [1]
