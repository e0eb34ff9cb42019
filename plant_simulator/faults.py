"""Fault injection for the virtual plant's Modbus TCP side, shared by tests and demos.

``ModbusFaults`` drives the real simulator server (stop/restart, drop connections, exception codes,
answers delayed past a timeout); ``MalformedModbusServer`` is a raw asyncio server that breaks frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes

from plant_simulator.modbus_server import SimModbusServer

_FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


@dataclass
class _Rule:
    unit_id: int | None
    table: str | None
    addresses: range | None
    exception: int | None = None
    delay_s: float = 0.0
    hits: int = 0

    def matches(self, unit: int, fc: int, address: int, count: int) -> bool:
        if self.unit_id is not None and unit != self.unit_id:
            return False
        if self.table is not None and _FC_TABLE.get(fc) != self.table:
            return False
        if self.addresses is not None:
            lo, hi = address, address + max(count, 1)
            if hi <= self.addresses.start or lo >= self.addresses.stop:
                return False
        return True


class ModbusFaults:
    """Faults on a running :class:`SimModbusServer`; ``clear()`` restores normal service."""

    def __init__(self, server: SimModbusServer) -> None:
        self.server = server
        self.rules: list[_Rule] = []
        server.fault = self._hook

    async def _hook(self, unit: int, fc: int, address: int, count: int) -> ExcCodes | None:
        for rule in self.rules:
            if rule.matches(unit, fc, address, count):
                rule.hits += 1
                if rule.delay_s:
                    await asyncio.sleep(rule.delay_s)
                if rule.exception is not None:
                    return ExcCodes(rule.exception)
        return None

    def answer_exception(
        self,
        code: int,
        unit_id: int | None = None,
        table: str | None = None,
        addresses: range | None = None,
    ) -> _Rule:
        """Answer matching reads with Modbus exception ``code`` (1..0x0B) instead of data."""
        rule = _Rule(unit_id, table, addresses, exception=ExcCodes(code))
        self.rules.append(rule)
        return rule

    def delay(
        self,
        seconds: float,
        unit_id: int | None = None,
        table: str | None = None,
        addresses: range | None = None,
    ) -> _Rule:
        """Hold matching answers for ``seconds`` (past the client's timeout, for a timeout test).

        pymodbus 3.16's server answers a delayed request with the transaction id of the newest
        request on that connection, so a client that sends again in the meantime can receive old
        data under its new id; use MalformedModbusServer's ``delay`` mode to test late answers.
        """
        rule = _Rule(unit_id, table, addresses, delay_s=seconds)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def drop_connections(self) -> int:
        """Close every client connection now (like a PLC that resets its TCP stack)."""
        return self.server.drop_connections()

    async def stop(self) -> None:
        """Stop serving: the listener closes and every client is disconnected."""
        await self.server.stop()

    async def restart(self) -> None:
        """Serve again on the same port (after ``stop``)."""
        await self.server.start()


# -- a server that breaks frames -------------------------------------------------------------------
MODES = (
    "ok",
    "wrong_tid",  # answer with another transaction id
    "tid_zero",  # answer with transaction id 0 (pymodbus does not check 0 itself)
    "wrong_unit",  # answer from another unit id
    "bad_protocol",  # MBAP protocol id != 0
    "short",  # MBAP announces more bytes than are sent
    "wrong_byte_count",  # PDU byte count disagrees with the data that follows
    "odd_byte_count",  # register data of an odd number of bytes
    "wrong_count",  # consistent frame, but fewer registers/bits than asked for
    "wrong_function",  # answers FC3 with FC4 (and vice versa), FC1 with FC2
    "undecodable",  # an unknown function code
    "exception",  # exception code (see ``exception_code``)
    "delay",  # correct answer, sent after ``delay_s`` (late: its request has timed out)
    "close",  # close the connection instead of answering
)
BAD_REGISTER = 0xDEAD  # every value in a broken frame; never a value of the good map


def good_register(address: int) -> int:
    """The register value MalformedModbusServer serves at ``address`` in correct answers."""
    return (address * 31 + 7) & 0x7FFF


def good_bit(address: int) -> bool:
    return address % 3 == 0


@dataclass
class MalformedModbusServer:
    """Answers FC1-4 for any unit from a fixed pattern (``good_register``/``good_bit``); each request
    gets the next mode of ``modes`` (cycled). Broken answers carry ``BAD_REGISTER`` values, so any value
    accepted from them is visible. Every request's function code is counted in ``function_codes``.
    """

    modes: list[str] = field(default_factory=lambda: ["ok"])
    host: str = "127.0.0.1"
    port: int = 0
    exception_code: int = 2
    delay_s: float = 1.0
    function_codes: Counter[int] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _late: list[asyncio.TimerHandle] = field(default_factory=list)

    def set_modes(self, modes: Iterable[str]) -> None:
        modes = list(modes)
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ValueError(f"unknown modes {unknown}; known: {', '.join(MODES)}")
        self.modes = modes
        self.requests = 0

    async def start(self) -> None:
        self.set_modes(self.modes)
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for h in self._late:
            h.cancel()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                fc = pdu[0]
                self.function_codes[fc] += 1
                mode = self.modes[self.requests % len(self.modes)]
                self.requests += 1
                self.served[mode] += 1
                if mode == "close":
                    break
                frame = self._answer(mode, tid, unit, pdu)
                if mode == "delay":
                    loop = asyncio.get_running_loop()
                    self._late.append(loop.call_later(self.delay_s, self._write_late, writer, frame))
                elif frame:
                    writer.write(frame)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    def _write_late(writer: asyncio.StreamWriter, frame: bytes) -> None:
        if not writer.is_closing():
            writer.write(frame)

    def _answer(self, mode: str, tid: int, unit: int, pdu: bytes) -> bytes:
        fc = pdu[0]
        if fc not in _FC_TABLE or len(pdu) < 5:
            return _mbap(tid, unit, bytes([fc | 0x80, 1]))
        address, count = struct.unpack(">HH", pdu[1:5])
        bits = fc in (1, 2)
        broken = mode not in ("ok", "delay", "exception")
        if mode == "exception":
            return _mbap(tid, unit, bytes([fc | 0x80, self.exception_code]))
        if mode == "undecodable":
            return _mbap(tid, unit, bytes([0x5A, 2, 0xDE, 0xAD]))
        n = count - 1 if mode == "wrong_count" and count > 1 else count
        if bits:
            vals = [not good_bit(address + i) if broken else good_bit(address + i) for i in range(n)]
            data = bytes(
                sum(1 << j for j, v in enumerate(vals[k : k + 8]) if v) for k in range(0, len(vals), 8)
            )
            if mode == "wrong_count" and len(data) == (count + 7) // 8:
                data = data[:-1]  # one byte short, else a count of bits in the same bytes looks right
        else:
            regs = [BAD_REGISTER if broken else good_register(address + i) for i in range(n)]
            data = struct.pack(f">{n}H", *regs)
        byte_count = len(data)
        if mode == "wrong_byte_count":
            byte_count = max(0, len(data) - 2) if not bits else len(data) + 1
        if mode == "odd_byte_count" and not bits:
            data = data[:-1]
            byte_count = len(data)
        rfc = fc
        if mode == "wrong_function":
            rfc = {1: 2, 2: 1, 3: 4, 4: 3}[fc]
        body = bytes([rfc, byte_count & 0xFF]) + data
        if mode == "wrong_tid":
            return _mbap((tid + 1) & 0xFFFF or 1, unit, body)
        if mode == "tid_zero":
            return _mbap(0, unit, body)
        if mode == "wrong_unit":
            return _mbap(tid, (unit + 1) & 0xFF, body)
        if mode == "bad_protocol":
            return _mbap(tid, unit, body, protocol=1)
        if mode == "short":
            return _mbap(tid, unit, body)[: 7 + len(body) // 2]
        return _mbap(tid, unit, body)


def _mbap(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu
