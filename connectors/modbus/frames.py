"""Strict Modbus frames: response PDUs that keep the raw bytes, the undecodable-PDU stand-in, frame checks.
A value from a malformed or mismatched frame is never accepted: a check raises ReadFailure or counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)

from connectors.modbus.read_plan import Request

#: Modbus exception codes (the protocol specification's names)
EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
ILLEGAL_ADDRESS = "exception_02"  # the ReadFailure kind of a refused address range


def exception_text(code: int) -> str:
    """``exception 02 ILLEGAL DATA ADDRESS``."""
    return f"exception {code:02d} {EXCEPTION_NAMES.get(code, 'unknown')}"


class ReadFailure(Exception):
    """One request of a poll failed; ``kind`` is the health error kind ("connection" ends the poll).

    ``ends_poll`` is set by whoever counted it when the failure also ended the connection (lost, hung).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.ends_poll = False


# -- strict responses: keep the raw bytes, check the byte count, never raise -----------------------
class _StrictRegisters:
    """Mixin for FC3/FC4 responses: the data bytes are kept as received (numpy reads them directly)."""

    raw: bytes = b""
    malformed: str = ""
    registers: Sequence[int]

    def decode(self, data: bytes) -> None:
        self.registers = []  # not built: the connector decodes ``raw``
        n = data[0] if data else -1
        if n < 0 or n != len(data) - 1 or n % 2:
            self.raw = b""
            self.malformed = f"byte count {n} does not match {max(len(data) - 1, 0)} data bytes"
            return
        self.raw = bytes(data[1:])
        self.malformed = ""


class _StrictBits:
    raw: bytes = b""
    malformed: str = ""
    bits: Sequence[bool]

    def decode(self, data: bytes) -> None:
        self.bits = []
        n = data[0] if data else -1
        if n < 0 or n != len(data) - 1:
            self.raw = b""
            self.malformed = f"byte count {n} does not match {max(len(data) - 1, 0)} data bytes"
            return
        self.raw = bytes(data[1:])
        self.malformed = ""


class _HoldingResponse(_StrictRegisters, ReadHoldingRegistersResponse):
    pass


class _InputResponse(_StrictRegisters, ReadInputRegistersResponse):
    pass


class _CoilsResponse(_StrictBits, ReadCoilsResponse):
    pass


class _DiscreteResponse(_StrictBits, ReadDiscreteInputsResponse):
    pass


class Undecodable(ModbusPDU):
    """What the decoder returns instead of ``None`` (which would make pymodbus drop the connection)."""

    function_code = 0

    def __init__(self, frame: bytes) -> None:
        super().__init__()
        self.malformed = f"undecodable PDU of {len(frame)} bytes (function code {frame[0] if frame else '-'})"


# table -> (request PDU class, strict response PDU class)
REQUEST_TYPES: dict[str, tuple[type[ModbusPDU], type[ModbusPDU]]] = {
    "coil": (ReadCoilsRequest, _CoilsResponse),
    "discrete": (ReadDiscreteInputsRequest, _DiscreteResponse),
    "holding": (ReadHoldingRegistersRequest, _HoldingResponse),
    "input": (ReadInputRegistersRequest, _InputResponse),
}


def install_strict_decoding(client: AsyncModbusTcpClient) -> None:
    """Register the strict responses and make an undecodable PDU an ``Undecodable``, not ``None``."""
    for _, response in REQUEST_TYPES.values():
        client.register(response)  # public API: our strict FC1-4 responses replace pymodbus' own
    # private ctx.framer.decoder: 3.16 has no public hook for an undecodable PDU and drops the link on its None
    decoder = client.ctx.framer.decoder
    plain_decode = decoder.decode

    def decode(frame: bytes) -> ModbusPDU:
        pdu = plain_decode(frame)
        return pdu if pdu is not None else Undecodable(frame)

    decoder.decode = decode  # type: ignore[method-assign]


def check_response(resp: Any, req: Request, pdu: ModbusPDU, where: str) -> bytes:
    """The data bytes of ``resp`` if it answers ``pdu`` (request ``req``) exactly, else raise ReadFailure."""
    fc = pdu.function_code
    if isinstance(resp, Undecodable):
        raise ReadFailure("malformed", f"{where}: {resp.malformed}")
    if resp.function_code == fc | 0x80:
        code = int(getattr(resp, "exception_code", 0))
        raise ReadFailure(f"exception_{code:02d}", f"{where}: Modbus {exception_text(code)}")
    expected = REQUEST_TYPES[req.table][1]
    if type(resp) is not expected or resp.function_code != fc:
        raise ReadFailure(
            "malformed", f"{where}: answer has function code {resp.function_code}, expected {fc}"
        )
    if resp.transaction_id != pdu.transaction_id:
        raise ReadFailure("malformed", f"{where}: answer has transaction id {resp.transaction_id}")
    if req.unit_id and resp.dev_id != req.unit_id:
        raise ReadFailure("malformed", f"{where}: answer from unit {resp.dev_id}")
    strict = cast(_StrictRegisters | _StrictBits, resp)  # its exact type was checked above
    if strict.malformed:
        raise ReadFailure("malformed", f"{where}: {strict.malformed}")
    raw = strict.raw
    if req.is_bits:
        if len(raw) != (req.count + 7) // 8:
            raise ReadFailure("malformed", f"{where}: {len(raw)} data bytes for {req.count} bits")
    elif len(raw) != 2 * req.count:
        raise ReadFailure("malformed", f"{where}: {len(raw) // 2} registers for {req.count} asked")
    return raw


def sent_ids(data: bytes) -> tuple[int, int] | None:
    """(transaction id, unit id) of an outgoing MBAP frame, or None if it is too short to say."""
    if len(data) >= 7:
        return (int.from_bytes(data[0:2], "big"), data[6])
    return None


def check_mbap(data: bytes, sent: tuple[int, int], on_error: Callable[[str, str], None]) -> None:
    """Count the received frames pymodbus would skip silently (their request then times out)."""
    pos = 0
    while len(data) - pos >= 7:
        tid = int.from_bytes(data[pos : pos + 2], "big")
        pid = int.from_bytes(data[pos + 2 : pos + 4], "big")
        length = int.from_bytes(data[pos + 4 : pos + 6], "big")
        unit = data[pos + 6]
        if pid != 0:
            on_error("bad_protocol_id", f"MBAP protocol id {pid} (expected 0)")
            break
        if len(data) - pos < 6 + length:
            break
        exp_tid, exp_unit = sent
        if tid != exp_tid:
            on_error("wrong_transaction_id", f"answer has transaction id {tid}, expected {exp_tid}")
        elif exp_unit and unit != exp_unit:
            on_error("wrong_unit_id", f"answer from unit {unit}, expected {exp_unit}")
        pos += 6 + max(length, 1)
