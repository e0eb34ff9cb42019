"""Isolating refused addresses (exception 02) in merged Modbus reads, against a fake device (no I/O).

The device refuses a request that touches a refused register, or that is longer than it allows.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from connectors.modbus.config import ModbusTag
from connectors.modbus.frames import ReadFailure
from connectors.modbus.poll_plan import build_group, group_items
from connectors.modbus.read_plan import PlanLimits, Request
from connectors.modbus.refusals import RefusedRanges, atoms
from shopfloor.health import HealthTracker

A = "test/line/cell/plc"


class FakeDevice:
    def __init__(
        self, refused: set[int] | None = None, max_count: int = 125, timeout_after: int | None = None
    ):
        self.refused, self.max_count, self.timeout_after = set(refused or ()), max_count, timeout_after
        self.reads: list[Request] = []

    async def read(self, req: Request) -> None:
        self.reads.append(req)
        if self.timeout_after is not None and len(self.reads) > self.timeout_after:
            raise ReadFailure("timeout", "no answer")
        regs = set(range(req.address, req.address + req.count))
        if regs & self.refused or req.count > self.max_count:
            raise ReadFailure("exception_02", f"{req.address}..: Modbus exception 02 ILLEGAL DATA ADDRESS")


def tags(*specs: dict[str, Any]) -> list[ModbusTag]:
    return [ModbusTag.model_validate({"asset": A, "unit_id": 1, "table": "holding", **s}) for s in specs]


def floats(addresses: range) -> list[ModbusTag]:
    return tags(*({"signal": f"f{a}", "address": a, "type": "float32"} for a in addresses))


def ranges(tag_list: list[ModbusTag], retry_s: float = 60.0) -> tuple[RefusedRanges, HealthTracker, Request]:
    g = build_group("default", 1.0, tag_list, PlanLimits())
    tracker = HealthTracker("plc", logging.getLogger("test.refusals"))
    rr = RefusedRanges("plc", g.requests, group_items(tag_list), tracker, tracker.log, retry_s)
    (req,) = g.requests  # everything merges into one request in these tests
    return rr, tracker, req


def refused_02(req: Request) -> ReadFailure:
    return ReadFailure("exception_02", "refused")


async def test_one_refused_tag_is_found_in_about_two_reads_per_halving() -> None:
    tl = floats(range(10, 82, 2)) + floats(range(82, 84, 2))  # 37 tags, 10..83; 82..83 refused
    rr, tracker, req = ranges(tl)
    dev = FakeDevice(refused={82, 83})
    assert await rr.isolate(req, refused_02(req), dev.read) is None
    requests, refused = rr.plan()
    assert [(r.address, r.count, f) for r, f in zip(requests, refused)] == [(10, 72, False), (82, 2, True)]
    assert len(dev.reads) <= 2 * math.ceil(math.log2(len(tl))) + 1  # + the read of the joined parts
    assert tracker.failed_items == {
        f"{A}:f82": "exception 02 ILLEGAL DATA ADDRESS: unit 1 holding 82..83 refused"
    }
    assert rr.refused() == {"unit 1 holding 82..83": [f"{A}:f82"]}
    build_group(
        "default", 1.0, tl, PlanLimits(), requests, refused
    )  # a valid plan: every item in one request


async def test_a_refused_hole_splits_the_read_and_fails_no_tag() -> None:
    tl = tags(  # 10..11 and 14..15, merged across the hole 12..13
        {"signal": "a", "address": 10, "type": "float32"}, {"signal": "b", "address": 14, "type": "float32"}
    )
    rr, tracker, req = ranges(tl)
    assert (req.address, req.count) == (10, 6)
    assert await rr.isolate(req, refused_02(req), FakeDevice(refused={12}).read) is None
    requests, refused = rr.plan()
    assert [(r.address, r.count) for r in requests] == [(10, 2), (14, 2)] and not any(refused)
    assert tracker.failed_items == {}


async def test_a_device_that_limits_the_request_length_keeps_the_parts() -> None:
    tl = floats(range(0, 60, 2))  # one request of 60 registers; the device serves at most 20
    rr, tracker, req = ranges(tl)
    dev = FakeDevice(max_count=20)
    assert await rr.isolate(req, refused_02(req), dev.read) is None
    requests, refused = rr.plan()
    assert not any(refused) and all(r.count <= 20 for r in requests)
    assert sum(r.count for r in requests) == 60 and tracker.failed_items == {}


async def test_an_inconclusive_search_changes_nothing() -> None:
    tl = floats(range(10, 84, 2))
    rr, tracker, req = ranges(tl)
    dev = FakeDevice(refused={82}, timeout_after=2)
    stopped = await rr.isolate(req, refused_02(req), dev.read)
    assert stopped is not None and stopped.kind == "timeout"
    assert rr.plan() == ([req], [False]) and not rr.active and tracker.failed_items == {}


async def test_a_refused_range_that_answers_again_is_restored_and_the_read_merged_again() -> None:
    tl = floats(range(10, 40, 2))
    rr, tracker, req = ranges(tl)
    dev = FakeDevice(refused={20})
    assert await rr.isolate(req, refused_02(req), dev.read) is None
    assert list(tracker.failed_items) == [f"{A}:f20"]
    assert not await rr.retry(dev.read)  # still refused: nothing changes
    dev.refused.clear()
    assert await rr.retry(dev.read)
    assert rr.plan() == ([req], [False]) and tracker.failed_items == {} and not rr.active


async def test_items_sharing_a_register_stay_together() -> None:
    tl = tags(
        {"signal": "alarm", "address": 20, "type": "bool", "bit": 3},
        {"signal": "mode", "address": 20, "type": "bits", "bit": 4, "length": 3},
        {"signal": "x", "address": 21, "type": "uint16"},
    )
    rr, tracker, req = ranges(tl)
    assert [len(a) for a in atoms(req, group_items(tl).items)] == [2, 1]
    assert await rr.isolate(req, refused_02(req), FakeDevice(refused={20}).read) is None
    assert sorted(tracker.failed_items) == [f"{A}:alarm", f"{A}:mode"]


async def test_a_refused_status_register_names_it() -> None:
    tl = tags({"signal": "t", "address": 10, "type": "int16", "status_address": 12})
    rr, tracker, req = ranges(tl)
    assert await rr.isolate(req, refused_02(req), FakeDevice(refused={12}).read) is None
    assert tracker.failed_items[f"{A}:t"].startswith("status register: exception 02")
