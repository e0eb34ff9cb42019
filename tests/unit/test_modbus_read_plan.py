"""The Modbus read planner: request counts for sparse maps, protocol limits, gap fill, unit/table split."""

from __future__ import annotations

import random

import pytest

from connectors.modbus.read_plan import Item, PlanLimits, plan_reads


def covered(items: list[Item], limits: PlanLimits) -> None:
    """Every item lies inside exactly one request of its unit and table, and limits hold."""
    reqs = plan_reads(items, limits)
    seen = []
    for r in reqs:
        limit = limits.max_bits if r.is_bits else limits.max_registers
        assert 1 <= r.count <= limit
        for i, off in r.items:
            it = items[i]
            assert (it.unit_id, it.table) == (r.unit_id, r.table)
            assert off == it.address - r.address and off >= 0 and off + it.size <= r.count
            seen.append(i)
    assert sorted(seen) == list(range(len(items)))


def test_sparse_map_request_count() -> None:
    # three clusters of float32 values on unit 1, far apart; one lone register on unit 2
    items = [Item(1, "holding", a, 2) for a in (0, 2, 4, 10, 12)]  # gap 4 between 6 and 10
    items += [Item(1, "holding", a, 2) for a in (1000, 1002, 1030)]  # gap 26
    items += [Item(1, "holding", 5000, 1), Item(2, "holding", 0, 1)]
    reqs = plan_reads(items, PlanLimits(gap_registers=10))
    assert [(r.unit_id, r.address, r.count) for r in reqs] == [
        (1, 0, 14),
        (1, 1000, 4),
        (1, 1030, 2),
        (1, 5000, 1),
        (2, 0, 1),
    ]
    assert len(plan_reads(items, PlanLimits(gap_registers=0))) == 6
    assert len(plan_reads(items, PlanLimits(gap_registers=30))) == 4
    covered(items, PlanLimits(gap_registers=10))


def test_one_register_per_request_is_never_the_plan_for_contiguous_tags() -> None:
    items = [Item(1, "input", a, 1) for a in range(1000)]
    reqs = plan_reads(items)
    assert len(reqs) == 8  # ceil(1000 / 125)
    assert all(r.count == 125 for r in reqs)
    assert len(plan_reads(items, PlanLimits(max_registers=100))) == 10


def test_limits_hold_for_bits_and_values_never_split() -> None:
    bits = [Item(1, "coil", a, 1) for a in range(0, 4500, 3)]
    reqs = plan_reads(bits, PlanLimits(gap_bits=2))
    assert len(reqs) == 3 and max(r.count for r in reqs) <= 2000
    assert len(plan_reads(bits, PlanLimits(gap_bits=1))) == 1500  # holes of 2 bits are too wide
    floats = [Item(1, "holding", 2 * i, 2) for i in range(200)]  # 400 registers
    reqs = plan_reads(floats)
    assert [r.count for r in reqs] == [124, 124, 124, 28]  # a float never straddles two requests
    covered(floats, PlanLimits())


def test_tables_and_units_are_never_merged() -> None:
    items = [Item(u, t, 0, 1) for u in (1, 2) for t in ("holding", "input", "coil", "discrete")]
    reqs = plan_reads(items, PlanLimits(gap_registers=100, gap_bits=100))
    assert len(reqs) == 8
    assert [r.function_code for r in reqs[:4]] == [1, 2, 3, 4]


def test_overlapping_and_duplicate_items_share_a_request() -> None:
    items = [
        Item(1, "holding", 10, 4),
        Item(1, "holding", 12, 2),
        Item(1, "holding", 10, 4),
        Item(1, "holding", 13, 1),
    ]
    reqs = plan_reads(items, PlanLimits(gap_registers=0))
    assert [(r.address, r.count) for r in reqs] == [(10, 4)]
    covered(items, PlanLimits(gap_registers=0))


def test_random_maps_are_covered_within_limits() -> None:
    rnd = random.Random(5)
    for _ in range(50):
        items = []
        for _ in range(rnd.randint(1, 300)):
            table = rnd.choice(["holding", "input", "coil", "discrete"])
            size = 1 if table in ("coil", "discrete") else rnd.choice([1, 2, 4, 10])
            items.append(Item(rnd.randint(0, 3), table, rnd.randint(0, 3000), size))
        limits = PlanLimits(
            max_registers=rnd.randint(10, 125),
            max_bits=rnd.randint(1, 2000),
            gap_registers=rnd.randint(0, 50),
            gap_bits=rnd.randint(0, 500),
        )
        covered(items, limits)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_reads([Item(1, "holding", 0, 126)])
    with pytest.raises(ValueError):
        plan_reads([Item(1, "holding", 65535, 2)])
    with pytest.raises(ValueError):
        plan_reads([Item(1, "eeprom", 0, 1)])
    with pytest.raises(ValueError):
        PlanLimits(max_registers=126)
    with pytest.raises(ValueError):
        PlanLimits(max_bits=2001)
