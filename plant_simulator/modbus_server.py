"""Modbus TCP server of the virtual plant (pymodbus 3.16 SimDevice API): one unit id per asset.

Registers are refreshed from the model at every tick; every client write is logged and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from plant_simulator.online import Column
from plant_simulator.register_map import COMMAND_REGISTER, AssetMap, Snapshot, encode

log = logging.getLogger("plant_simulator.modbus")

_TABLE = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}


@dataclass(frozen=True, slots=True)
class WriteRecord:
    unit_id: int
    function_code: int
    address: int
    values: tuple[int, ...]
    accepted: bool


#: a fault hook: (unit id, function code, address, count) -> exception code to answer, or None;
#: it may sleep to delay the answer (see plant_simulator/faults.py)
FaultHook = Callable[[int, int, int, int], Awaitable[ExcCodes | None]]


class SimModbusServer:
    """Serves the register map; ``publish`` refreshes it, reads always see one consistent snapshot."""

    def __init__(self, maps: list[AssetMap], host: str = "127.0.0.1", port: int = 5020) -> None:
        self.maps = {m.unit_id: m for m in maps}
        self.host, self.port = host, port
        self.snap: dict[int, Snapshot] = {
            m.unit_id: Snapshot([0] * m.hr_words, [0] * m.ir_words, [False] * m.coils, [False] * m.discretes)
            for m in maps
        }
        self.command: dict[int, int] = {m.unit_id: 0 for m in maps}
        self.writes: list[WriteRecord] = []
        self.reads = 0
        self.last_step = -1
        self.function_codes: Counter[int] = Counter()  # every request PDU received, by function code
        self.fault: FaultHook | None = None
        self._devices = [
            SimDevice(
                m.unit_id,
                simdata=(
                    [SimData(0, values=[False] * m.coils, datatype=DataType.BITS)],
                    [SimData(0, values=[False] * m.discretes, datatype=DataType.BITS)],
                    [SimData(0, values=[0] * m.hr_words, datatype=DataType.REGISTERS)],
                    [SimData(0, values=[0] * m.ir_words, datatype=DataType.REGISTERS)],
                ),
                action=partial(self._action, m.unit_id),
            )
            for m in maps
        ]
        self.server = self._new_server()

    def _new_server(self) -> ModbusTcpServer:
        return ModbusTcpServer(self._devices, address=(self.host, self.port), trace_pdu=self._trace_pdu)

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.function_codes[pdu.function_code] += 1
        return pdu

    async def start(self) -> None:
        if self.server.transport is not None or self.server.serving.done():
            self.server = self._new_server()  # a stopped pymodbus server cannot listen again
        await self.server.serve_forever(background=True)
        log.info("Modbus TCP server on %s:%d, units 1..%d", self.host, self.port, len(self.maps))

    async def stop(self) -> None:
        await self.server.shutdown()

    def drop_connections(self) -> int:
        """Close every client connection (the listener stays up); returns how many were closed."""
        conns = list(self.server.active_connections.values())
        for c in conns:
            c.close()
        return len(conns)

    async def publish(self, step: int, ts_ns: int, column: Column) -> None:
        for uid, m in self.maps.items():
            values, status = column[m.asset]
            self.snap[uid] = encode(m, ts_ns // 1_000_000, step, values, status, self.command[uid])
        self.last_step = step

    async def _action(
        self,
        unit: int,
        fc: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _TABLE.get(fc, "?")
        if self.fault is not None and set_values is None:
            exc = await self.fault(unit, fc, address, count)
            if exc is not None:
                return exc
        if set_values is not None and fc in (5, 6, 15, 16, 22, 23):
            vals = tuple(int(v) for v in set_values)
            ok = table == "holding" and address == COMMAND_REGISTER and count == 1
            self.writes.append(WriteRecord(unit, fc, address, vals, ok))
            log.warning(
                "client write unit=%d fc=%d address=%d values=%s -> %s",
                unit,
                fc,
                address,
                list(vals),
                "accepted" if ok else "rejected (read-only)",
            )
            if not ok:
                return ExcCodes.ILLEGAL_ADDRESS
            self.command[unit] = vals[0]
            return None
        self.reads += 1
        snap = self.snap[unit]
        if table == "holding":
            registers[: len(snap.hr)] = snap.hr
        elif table == "input":
            registers[: len(snap.ir)] = snap.ir
        elif table == "coil":
            regs = SimUtils.bitsToRegisters(snap.coils)
            registers[: len(regs)] = regs
        elif table == "discrete":
            regs = SimUtils.bitsToRegisters(snap.discretes)
            registers[: len(regs)] = regs
        return None
