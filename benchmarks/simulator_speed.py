"""Benchmark of the virtual plant: offline speed vs bare numpy, and server values/s vs bare servers.

Run: python benchmarks/simulator_speed.py [--days 3] [--seconds 5]; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from plant_simulator.clock import BLOCK_STEPS, SimClock
from plant_simulator.offline import generate
from plant_simulator.online import OnlinePlant, Publisher
from plant_simulator.plant import default_plant
from shopfloor.testing.servers import free_port


def offline(days: float) -> None:
    plant = default_plant(seed=1)
    n_blocks = int(days * 24)
    t0 = time.perf_counter()
    for k in range(n_blocks):
        plant.block(k)
    model_s = time.perf_counter() - t0
    n_sig = sum(len(plant.signals(p)) for p in plant.assets)
    values = n_sig * n_blocks * BLOCK_STEPS
    # raw baseline: a bare numpy loop producing the same number of values (one normal draw + one
    # multiply-add per value, per block), nothing else
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(n_blocks):
        x = rng.standard_normal((n_sig, BLOCK_STEPS))
        x = x * 0.5 + 1.0
    base_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        res = generate(default_plant(seed=1), days, Path(d), progress=None)
    sim_s = n_blocks * BLOCK_STEPS
    print(f"offline, default plant ({len(plant.assets)} assets, {n_sig} signals), {days:g} simulated days:")
    print(f"  model only:      {sim_s / model_s:12,.0f} sim-s/wall-s ({values / model_s:,.0f} values/s)")
    print(
        f"  model + Parquet: {res.speedup:12,.0f} sim-s/wall-s -> 90 days in {90 * 86400 / res.speedup:.0f} s"
    )
    print(
        f"  bare numpy baseline: {sim_s / base_s:12,.0f} sim-s per wall-s  ({values / base_s:,.0f} values/s)"
    )
    print(
        f"  ratio model/baseline: {base_s / model_s:.3f}; model+Parquet/baseline: {base_s / res.wall_s:.3f}"
    )


async def modbus(seconds: float) -> None:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    from plant_simulator.modbus_server import SimModbusServer
    from plant_simulator.register_map import build_register_map

    plant = default_plant(seed=1)
    maps = build_register_map({p: plant.signals(p) for p in plant.assets})
    srv = SimModbusServer(maps, "127.0.0.1", free_port())
    await srv.start()
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1000.0), [srv], tick_s=0.1)
    task = asyncio.create_task(pub.run())
    values_per_sweep = sum(len([e for e in m.entries if e.table == "holding"]) for m in maps)

    async def sweep_loop(port: int, units: list[tuple[int, int]]) -> float:
        c = AsyncModbusTcpClient("127.0.0.1", port=port)
        await c.connect()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for uid, words in units:
                r = await c.read_holding_registers(0, count=words, device_id=uid)
                assert not r.isError()
            n += 1
        el = time.perf_counter() - t0
        c.close()
        return n / el

    try:
        sweeps = await sweep_loop(srv.port, [(m.unit_id, m.hr_words) for m in maps])
    finally:
        task.cancel()
        await srv.stop()
    bare_port = free_port()
    devices = [
        SimDevice(
            m.unit_id,
            simdata=(
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[1] * m.hr_words, datatype=DataType.REGISTERS)],
                [SimData(0, values=[1] * 16, datatype=DataType.REGISTERS)],
            ),
        )
        for m in maps
    ]
    bare = ModbusTcpServer(devices, address=("127.0.0.1", bare_port))
    await bare.serve_forever(background=True)
    try:
        base = await sweep_loop(bare_port, [(m.unit_id, m.hr_words) for m in maps])
    finally:
        await bare.shutdown()
    print(f"Modbus TCP, one client reading all holding registers of {len(maps)} units (model at 1000x):")
    print(
        f"  simulator: {sweeps * values_per_sweep:10,.0f} mapped values/s ({sweeps * len(maps):,.0f} req/s)"
    )
    print(f"  bare pymodbus server: {base * values_per_sweep:10,.0f} values/s; ratio {sweeps / base:.2f}")


async def opcua(seconds: float) -> None:
    from asyncua import Client, Server, ua

    from plant_simulator.opcua_server import SimOpcUaServer

    plant = default_plant(seed=1)
    srv = SimOpcUaServer({p: plant.signals(p) for p in plant.assets}, "127.0.0.1", free_port())
    await srv.start()
    pub = Publisher(OnlinePlant(plant), SimClock(plant.start_ns, 1000.0), [srv], tick_s=0.1)
    task = asyncio.create_task(pub.run())
    ids = [nid for nodes in srv.nodes.values() for nid, _ in nodes]

    async def read_loop(endpoint: str, nodeids: list) -> float:
        async with Client(endpoint, timeout=10) as c:
            nodes = [c.get_node(n) for n in nodeids]
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                await c.read_values(nodes)
                n += len(nodes)
            return n / (time.perf_counter() - t0)

    try:
        ours = await read_loop(srv.endpoint, ids)
        pub_rate = pub.published * len(ids)
    finally:
        task.cancel()
        await srv.stop()
    bare = Server()
    await bare.init()
    ep = f"opc.tcp://127.0.0.1:{free_port()}/bare"
    bare.set_endpoint(ep)
    bare.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await bare.register_namespace("urn:bare")
    obj = await bare.nodes.objects.add_object(idx, "o")
    bare_ids = [(await obj.add_variable(idx, f"v{i}", 1.0)).nodeid for i in range(len(ids))]
    await bare.start()
    try:
        base = await read_loop(ep, bare_ids)
    finally:
        await bare.stop()
    print(f"OPC UA, one client reading all {len(ids)} variables per request (model at 1000x):")
    print(f"  simulator: {ours:10,.0f} values/s (server also published {pub_rate:,} values during the run)")
    print(f"  bare asyncua server, same count of variables: {base:10,.0f} values/s; ratio {ours / base:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=3.0, help="simulated days for the offline figures")
    ap.add_argument("--seconds", type=float, default=5.0, help="wall seconds per server measurement")
    a = ap.parse_args()
    offline(a.days)
    asyncio.run(modbus(a.seconds))
    asyncio.run(opcua(a.seconds))


if __name__ == "__main__":
    main()
