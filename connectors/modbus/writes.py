"""Guarded writes of a Modbus source: only to tags that say ``writable: true``, refused before anything is sent.
Polling never writes; a write goes out as FC 5 (coil), 6 (one register) or 16 (several registers).
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.modbus.config import ModbusTag
from connectors.modbus.connection import ModbusConnection
from connectors.modbus.decode import encode_value


class GuardedWriter:
    """``write(tag, value)`` in engineering units; counts what it sent in ``writes_sent``."""

    def __init__(self, source: str, tags: Sequence[ModbusTag], conn: ModbusConnection) -> None:
        self.source, self.conn = source, conn
        self._by_key = {(t.asset, t.signal): t for t in tags}
        self.writes_sent = 0

    def tag(self, tag: ModbusTag | tuple[str, str]) -> ModbusTag:
        t = tag if isinstance(tag, ModbusTag) else self._by_key.get(tuple(tag))  # type: ignore[arg-type]
        if t is None:
            raise KeyError(f"source {self.source!r} has no tag {tag!r}")
        return t

    async def write(self, tag: ModbusTag | tuple[str, str], value: float) -> None:
        """Write ``value`` (in engineering units: (value - offset) / scale goes on the wire).

        Refused with PermissionError, before anything is sent, unless the tag says ``writable: true``.
        """
        t = self.tag(tag)
        if not t.writable:
            raise PermissionError(
                f"tag {t.asset} {t.signal} of source {self.source!r} is read-only; set 'writable: true' "
                "on the tag to allow writes (nothing was sent)"
            )
        client = self.conn.client
        if client is None or not self.conn.connected.is_set():
            raise ConnectionError(f"source {self.source!r} is not connected")
        if t.table == "coil":
            resp = await self.conn.call(
                lambda: client.write_coil(t.address, bool(value), device_id=t.unit_id)
            )
        else:
            regs = encode_value((value - t.offset) / t.scale, t.type, t.word_order, t.byte_order)
            if len(regs) == 1:
                resp = await self.conn.call(
                    lambda: client.write_register(t.address, regs[0], device_id=t.unit_id)
                )
            else:
                resp = await self.conn.call(
                    lambda: client.write_registers(t.address, regs, device_id=t.unit_id)
                )
        self.writes_sent += 1
        if resp.isError():
            raise OSError(
                f"device refused the write to {t.asset} {t.signal}: exception {getattr(resp, 'exception_code', '?')}"
            )
