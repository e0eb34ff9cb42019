"""Event identity without a server: seq numbering, the line protocol's key/seq tags, parsing back.

The same identities end to end against real SQLite and influxd are in tests/integration/test_events.py.
"""

from __future__ import annotations

from historian.base import event_seqs
from historian.influxql import events_from, events_query
from historian.line_protocol import encode_events
from shopfloor.model import Event, EventKind

A = "s/a/l/m"


def test_seq_numbers_events_sharing_asset_kind_key_and_ts_in_order() -> None:
    events = [
        Event(A, EventKind.SYSTEM, 10, key="a"),
        Event(A, EventKind.SYSTEM, 10, key="b"),
        Event(A, EventKind.SYSTEM, 10, key="a"),
        Event(A, EventKind.ALARM, 10, key="a"),  # another kind
        Event("s/a/l/n", EventKind.SYSTEM, 10, key="a"),  # another asset
        Event(A, EventKind.SYSTEM, 11, key="a"),  # another instant
        Event(A, EventKind.SYSTEM, 10, key="a"),
        Event(A, EventKind.SYSTEM, 10),
        Event(A, EventKind.SYSTEM, 10),
    ]
    assert event_seqs(events) == [0, 0, 1, 0, 0, 0, 2, 0, 1]
    assert event_seqs(events) == event_seqs(list(events))  # a replay numbers them the same
    assert event_seqs([]) == []


def test_line_protocol_tags_key_when_set_and_seq_only_above_zero() -> None:
    events = [
        Event(A, EventKind.ALARM, 42, "HI", "hot"),
        Event(A, EventKind.ALARM, 42, "HI", "hot again"),
        Event(A, EventKind.SYSTEM, 42, "txt", "x", key="recipe name"),
        Event(A, EventKind.SYSTEM, 42, "txt", "y", key="recipe name"),
        Event(A, EventKind.SYSTEM, 42, "txt", "z", key="a,b=c"),
    ]
    lines = encode_events(events).decode().splitlines()
    heads = [line.split(" code=")[0] for line in lines]
    assert heads == [
        "_shopfloor_events,asset=s/a/l/m,kind=alarm",  # exactly the series of before key/seq existed
        "_shopfloor_events,asset=s/a/l/m,kind=alarm,seq=1",
        "_shopfloor_events,asset=s/a/l/m,key=recipe\\ name,kind=system",
        "_shopfloor_events,asset=s/a/l/m,key=recipe\\ name,kind=system,seq=1",
        "_shopfloor_events,asset=s/a/l/m,key=a\\,b\\=c,kind=system",
    ]
    assert all(line.endswith(" 42") for line in lines)
    assert encode_events(events) == encode_events(list(events))  # idempotent replay: same bytes


def test_events_query_groups_by_key_and_seq() -> None:
    q = events_query(0, 10, A, EventKind.GAP)
    assert 'GROUP BY "asset", "kind", "key", "seq"' in q
    assert "\"asset\" = 's/a/l/m'" in q and "\"kind\" = 'gap'" in q


def test_events_from_reads_key_and_orders_by_ts_asset_kind_key_seq() -> None:
    cols = ["time", "code", "message", "value", "data"]
    series = [
        {"name": "_shopfloor_events", "tags": {"asset": A, "kind": "system", "key": "b", "seq": "10"},
         "columns": cols, "values": [[5, "c", "b10", None, None]]},
        {"name": "_shopfloor_events", "tags": {"asset": A, "kind": "system", "key": "b", "seq": "2"},
         "columns": cols, "values": [[5, "c", "b2", 1.5, '{"n":1}']]},
        {"name": "_shopfloor_events", "tags": {"asset": A, "kind": "system", "key": "", "seq": ""},
         "columns": cols, "values": [[5, "c", "plain", None, None], [3, "c", "early", None, None]]},
        {"name": "_shopfloor_events", "tags": {"asset": A, "kind": "system", "key": "b", "seq": ""},
         "columns": cols, "values": [[5, "c", "b0", None, None]]},
    ]  # fmt: skip
    events = events_from(series)
    assert [e.message for e in events] == ["early", "plain", "b0", "b2", "b10"]
    assert [e.key for e in events] == ["", "", "b", "b", "b"]
    assert events[3].value == 1.5 and events[3].data == {"n": 1}


def test_event_key_survives_the_spool_json() -> None:
    e = Event(A, EventKind.GAP, 7, "lost", "gone", 1.0, {"source": "plc"}, key="plc-1")
    assert Event.from_json(e.to_json()) == e
    assert Event.from_json({k: v for k, v in e.to_json().items() if k != "key"}).key == ""


def test_a_part_of_a_write_sent_alone_can_keep_its_numbers() -> None:
    """Bisecting a refused write must not renumber the second half (it would overwrite the first)."""
    events = [Event(A, EventKind.SYSTEM, 42, "c", f"m{i}", key="k") for i in range(6)]
    seqs = event_seqs(events)
    whole = encode_events(events).splitlines()
    halves = (
        encode_events(events[:3], seqs[:3]).splitlines() + encode_events(events[3:], seqs[3:]).splitlines()
    )
    assert halves == whole
    assert encode_events(events[3:]).splitlines() != whole[3:]  # renumbered from 0: what to avoid
