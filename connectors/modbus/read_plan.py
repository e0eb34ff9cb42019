"""The Modbus read planner: merges nearby addresses of one unit id and table into the fewest requests.
Pure (no I/O): items in, requests out, within the protocol limits and a configurable gap fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FUNCTION_CODE = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAX_REGISTERS = 125  # FC3/FC4: 125 registers fit in one 253-byte PDU
MAX_BITS = 2000  # FC1/FC2


@dataclass(frozen=True, slots=True)
class Item:
    """Something to read: ``size`` registers (or bits, for coil/discrete) from ``address``."""

    unit_id: int
    table: str
    address: int
    size: int


@dataclass(frozen=True, slots=True)
class Request:
    """One read request; ``items`` are (index into the planner's input, offset from ``address``)."""

    unit_id: int
    table: str
    address: int
    count: int
    items: tuple[tuple[int, int], ...]

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.table]

    @property
    def is_bits(self) -> bool:
        return self.table in ("coil", "discrete")


@dataclass(frozen=True, slots=True)
class PlanLimits:
    max_registers: int = MAX_REGISTERS
    max_bits: int = MAX_BITS
    gap_registers: int = 10  # unused registers that may be read to join two items into one request
    gap_bits: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.max_registers <= MAX_REGISTERS:
            raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}")
        if not 1 <= self.max_bits <= MAX_BITS:
            raise ValueError(f"max_bits must be 1..{MAX_BITS}")
        if self.gap_registers < 0 or self.gap_bits < 0:
            raise ValueError("gap fill must be >= 0")


def plan_reads(items: Sequence[Item], limits: PlanLimits = PlanLimits()) -> list[Request]:
    """Cover every item with as few requests as the limits allow.

    Per (unit id, table), items sorted by address are swept once: an item joins the open request
    when the unread hole before it is at most the gap fill and the request stays within the
    per-request limit; otherwise it opens a new request. Overlapping items share registers. For
    items that do not overlap this greedy sweep is minimal: each request reaches as far as allowed.
    Requests come out ordered by unit id, table (function code) and address.
    """
    groups: dict[tuple[int, str], list[int]] = {}
    for i, it in enumerate(items):
        if it.table not in FUNCTION_CODE:
            raise ValueError(f"item {i}: unknown table {it.table!r}")
        limit = limits.max_bits if it.table in ("coil", "discrete") else limits.max_registers
        if not 1 <= it.size <= limit:
            raise ValueError(f"item {i}: size {it.size} does not fit in one request (1..{limit})")
        if it.address < 0 or it.address + it.size > 65536:
            raise ValueError(f"item {i}: address {it.address} + {it.size} is outside 0..65535")
        groups.setdefault((it.unit_id, it.table), []).append(i)

    out: list[Request] = []
    for unit_id, table in sorted(groups, key=lambda k: (k[0], FUNCTION_CODE[k[1]])):
        bits = table in ("coil", "discrete")
        limit = limits.max_bits if bits else limits.max_registers
        gap = limits.gap_bits if bits else limits.gap_registers
        idx = sorted(groups[(unit_id, table)], key=lambda i: (items[i].address, -items[i].size))
        start = end = -1
        members: list[int] = []
        for i in idx:
            a, n = items[i].address, items[i].size
            if members and a - end <= gap and max(end, a + n) - start <= limit:
                end = max(end, a + n)
                members.append(i)
                continue
            if members:
                out.append(_request(unit_id, table, start, end, members, items))
            start, end, members = a, a + n, [i]
        if members:
            out.append(_request(unit_id, table, start, end, members, items))
    return out


def _request(
    unit_id: int, table: str, start: int, end: int, members: list[int], items: Sequence[Item]
) -> Request:
    return Request(unit_id, table, start, end - start, tuple((i, items[i].address - start) for i in members))


def words_read(requests: Sequence[Request]) -> int:
    """Registers plus bits all requests read (for describe() and the planner tests)."""
    return sum(r.count for r in requests)
