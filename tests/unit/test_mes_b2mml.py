"""mes.b2mml: a B2MML ProductionSchedule becomes exact OrderSpecs or is refused whole, naming element and reason;
a ProductionPerformance export parses back with the figures.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mes.b2mml import (
    B2MML_NS,
    B2mmlError,
    parse_production_schedule,
    production_performance,
)
from mes.order_spec import OrderPerformance, OrderSpec, OrderStatus

DATA = Path(__file__).resolve().parents[1] / "data" / "b2mml"
SCHEDULE = (DATA / "schedule.xml").read_bytes()
NS = {"b": B2MML_NS}
KNOWN = {
    "qijiang/machining/gearbox-line/cnc-1",
    "qijiang/machining/gearbox-line/measuring-1",
    "qijiang/copper/hot-rolling/mill-1",
    "qijiang/aluminium/extrusion/press-1",
}
R2 = "ProductionSchedule/ProductionRequest[2]"

EXPECTED = [
    OrderSpec(
        id="WO-2026-1001",
        product="gearbox-housing-a",
        asset="qijiang/machining/gearbox-line/cnc-1",
        quantity=400,
        unit="parts",
        planned_start=datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        planned_end=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        priority=10,
        description="Gearbox housing A, bearing bores, customer lot 7",
    ),
    OrderSpec(
        id="WO-2026-1002",
        product="cu-strip-8mm",
        asset="qijiang/copper/hot-rolling/mill-1",
        quantity=60,
        unit="coils",
        planned_start=datetime(2026, 12, 2, 6, 0, tzinfo=UTC),
        planned_end=datetime(2026, 12, 2, 18, 30, tzinfo=UTC),
        priority=-5,
        description="Copper strip 8 mm, hot rolled",
    ),
    OrderSpec(
        id="WO-2026-1003",
        product="al-6063-profile",
        asset="qijiang/aluminium/extrusion/press-1",
        quantity=12.5,
        unit="t",
    ),
]


def schedule_text() -> str:
    return SCHEDULE.decode("utf-8")


def replace_once(old: str, new: str, text: str | None = None) -> str:
    """The fixture with ``old`` replaced; fails if ``old`` is not there exactly once (so no test goes vacuous)."""
    text = schedule_text() if text is None else text
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the fixture"
    return text.replace(old, new)


def refused(data: bytes | str, **kw: object) -> B2mmlError:
    with pytest.raises(B2mmlError) as info:
        parse_production_schedule(data, **kw)  # type: ignore[arg-type]
    return info.value


# --- good documents --------------------------------------------------------------------------------------


def test_fixture_gives_exact_orders() -> None:
    assert parse_production_schedule(SCHEDULE, known_assets=KNOWN) == EXPECTED


def test_str_input_and_any_well_formed_asset_without_known_assets() -> None:
    assert parse_production_schedule(schedule_text()) == EXPECTED


def test_no_namespace_and_v0600_namespace_read_the_same() -> None:
    bare = replace_once(f' xmlns="{B2MML_NS}"', "")
    v0600 = replace_once(f' xmlns="{B2MML_NS}"', ' xmlns="http://www.mesa.org/xml/B2MML-V0600"')
    assert parse_production_schedule(bare) == EXPECTED
    assert parse_production_schedule(v0600) == EXPECTED


def test_prefixed_namespace_reads_the_same() -> None:
    text = replace_once(f' xmlns="{B2MML_NS}"', f' xmlns:b2mml="{B2MML_NS}"')
    text = re.sub(r"<(/?)([A-Z]\w*)", r"<\1b2mml:\2", text)
    assert "<b2mml:QuantityString>" in text
    assert parse_production_schedule(text) == EXPECTED


def test_request_times_win_over_segment_times() -> None:
    text = replace_once(
        "<Priority>-5</Priority>", "<Priority>-5</Priority><StartTime>2026-12-02T05:00:00Z</StartTime>"
    )
    orders = parse_production_schedule(text)
    assert orders[1].planned_start == datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    assert orders[1].planned_end == datetime(2026, 12, 2, 18, 30, tzinfo=UTC)


# --- refusals: each names the element and the reason, and nothing is returned ---------------------------


def test_not_well_formed_names_line_and_column() -> None:
    text = replace_once(
        "</Priority>\n    <SegmentRequirement>\n      <ID>WO-2026-1002.10", "</Prio>\n    <x>"
    )
    before = text[: text.index("</Prio>")]
    # expat points at the name of the mismatched end tag, just after "</"; columns are counted from 1.
    line, column = before.count("\n") + 1, len(before.rsplit("\n", 1)[-1]) + 3
    err = refused(text)
    assert err.path == "/"
    assert f"not well-formed XML at line {line}, column {column}: " in err.reason
    assert "mismatched tag" in err.reason


def test_missing_id() -> None:
    err = refused(replace_once("<ID>WO-2026-1002</ID>", ""))
    assert str(err) == f"{R2}/ID: missing"


def test_empty_id() -> None:
    assert str(refused(replace_once("<ID>WO-2026-1002</ID>", "<ID>  </ID>"))) == f"{R2}/ID: empty"


def test_bad_order_id_gives_pydantic_message_on_the_element() -> None:
    err = refused(replace_once("<ID>WO-2026-1002</ID>", "<ID>WO 2026 1002</ID>"))
    assert err.path == f"{R2}/ID"
    assert "order ids are 1-64 characters" in err.reason


QTY = f"{R2}/SegmentRequirement/MaterialProducedRequirement/Quantity/QuantityString"


def test_non_numeric_quantity() -> None:
    err = refused(replace_once("<QuantityString>60</QuantityString>", "<QuantityString>abc</QuantityString>"))
    assert str(err) == f"{QTY}: not a number: 'abc'"


@pytest.mark.parametrize("text", ["-60", "0", "0.0"])
def test_quantity_not_positive(text: str) -> None:
    err = refused(
        replace_once("<QuantityString>60</QuantityString>", f"<QuantityString>{text}</QuantityString>")
    )
    assert err.path == QTY
    assert err.reason == f"quantity must be > 0, not {text}"


@pytest.mark.parametrize("text", ["NaN", "inf", "1_000", "6O", "1,5"])
def test_quantity_oddities_are_not_numbers(text: str) -> None:
    err = refused(
        replace_once("<QuantityString>60</QuantityString>", f"<QuantityString>{text}</QuantityString>")
    )
    assert str(err) == f"{QTY}: not a number: {text!r}"


def test_quantity_beyond_float_range() -> None:
    err = refused(
        replace_once("<QuantityString>60</QuantityString>", "<QuantityString>1e999</QuantityString>")
    )
    assert str(err) == f"{QTY}: too large: '1e999'"


def test_quantity_too_large_gives_pydantic_message() -> None:
    err = refused(
        replace_once("<QuantityString>60</QuantityString>", "<QuantityString>2e12</QuantityString>")
    )
    assert err.path == QTY
    assert "less than or equal to" in err.reason


def test_missing_quantity() -> None:
    text = re.sub(
        r"<Quantity>\s*<QuantityString>60</QuantityString>.*?</Quantity>", "", schedule_text(), flags=re.S
    )
    assert "<QuantityString>60<" not in text
    err = refused(text)
    assert err.path == QTY
    assert err.reason.startswith("missing")


def test_time_without_zone() -> None:
    err = refused(
        replace_once("<EarliestStartTime>2026-12-02T06:00:00Z<", "<EarliestStartTime>2026-12-02T06:00:00<")
    )
    assert err.path == f"{R2}/SegmentRequirement/EarliestStartTime"
    assert err.reason.startswith("no time zone in '2026-12-02T06:00:00'")


def test_time_not_a_time() -> None:
    err = refused(replace_once("<LatestEndTime>2026-12-02T18:30:00Z<", "<LatestEndTime>tomorrow<"))
    assert str(err) == f"{R2}/SegmentRequirement/LatestEndTime: not an ISO 8601 date-time: 'tomorrow'"


def test_end_before_start() -> None:
    err = refused(
        replace_once("<LatestEndTime>2026-12-02T18:30:00Z<", "<LatestEndTime>2026-12-02T05:00:00Z<")
    )
    assert err.path == f"{R2}/SegmentRequirement/LatestEndTime"
    assert "is not after the start" in err.reason


def test_end_equal_to_start_in_another_zone() -> None:
    err = refused(
        replace_once("<LatestEndTime>2026-12-02T18:30:00Z<", "<LatestEndTime>2026-12-02T14:00:00+08:00<")
    )
    assert err.path == f"{R2}/SegmentRequirement/LatestEndTime"


def test_unknown_asset_from_equipment_requirement() -> None:
    text = replace_once(
        "<EquipmentID>qijiang/aluminium/extrusion/press-1</EquipmentID>",
        "<EquipmentID>qijiang/x/y</EquipmentID>",
    )
    err = refused(text, known_assets=KNOWN)
    assert str(err) == (
        "ProductionSchedule/ProductionRequest[3]/SegmentRequirement/EquipmentRequirement/EquipmentID: "
        "unknown asset qijiang/x/y"
    )
    # Without a set of known assets any well-formed path is taken.
    assert parse_production_schedule(text)[2].asset == "qijiang/x/y"


def test_unknown_asset_from_nested_hierarchy_scope_names_the_innermost_equipment() -> None:
    err = refused(
        replace_once("<EquipmentID>mill-1</EquipmentID>", "<EquipmentID>mill-9</EquipmentID>"),
        known_assets=KNOWN,
    )
    assert err.path == f"{R2}/HierarchyScope/HierarchyScope/HierarchyScope/HierarchyScope/EquipmentID"
    assert err.reason == "unknown asset qijiang/copper/hot-rolling/mill-9"


def test_asset_that_is_not_a_path() -> None:
    err = refused(
        replace_once(
            "<EquipmentID>qijiang/aluminium/extrusion/press-1</EquipmentID>",
            "<EquipmentID>PRESS 1</EquipmentID>",
        )
    )
    assert err.path.endswith("ProductionRequest[3]/SegmentRequirement/EquipmentRequirement/EquipmentID")
    assert "invalid asset path 'PRESS 1'" in err.reason


def test_missing_asset() -> None:
    text = re.sub(r"<HierarchyScope>.*</HierarchyScope>", "", schedule_text(), flags=re.S)
    assert "mill-1" not in text
    err = refused(text)
    assert err.path == f"{R2}/SegmentRequirement/EquipmentRequirement/EquipmentID"
    assert err.reason.startswith("missing")


def test_missing_product() -> None:
    text = replace_once("<ProductProductionRuleID>cu-strip-8mm</ProductProductionRuleID>", "")
    text = replace_once("<MaterialDefinitionID>cu-strip-8mm</MaterialDefinitionID>", "", text)
    err = refused(text)
    assert err.path == f"{R2}/SegmentRequirement/ProductSegmentID"
    assert err.reason.startswith("missing")


def test_priority_not_an_integer_and_out_of_range() -> None:
    assert (
        str(refused(replace_once("<Priority>-5<", "<Priority>high<")))
        == f"{R2}/Priority: not an integer: 'high'"
    )
    err = refused(replace_once("<Priority>-5<", "<Priority>5000<"))
    assert err.path == f"{R2}/Priority"
    assert "less than or equal to 1000" in err.reason


def test_description_too_long() -> None:
    err = refused(replace_once("<Description>Copper strip 8 mm, hot rolled<", f"<Description>{'x' * 501}<"))
    assert err.path == f"{R2}/Description"
    assert "at most 500 characters" in err.reason


def test_duplicate_order_id() -> None:
    err = refused(replace_once("<ID>WO-2026-1003</ID>", "<ID>WO-2026-1001</ID>"))
    assert str(err) == (
        "ProductionSchedule/ProductionRequest[3]/ID: duplicate order id WO-2026-1001 "
        "(also in ProductionSchedule/ProductionRequest[1])"
    )


def test_one_bad_request_refuses_the_whole_document() -> None:
    # Requests 1 and 2 are fine; request 3 is not: nothing comes back, the error names request 3.
    text = replace_once("<QuantityString>12.5</QuantityString>", "<QuantityString>-1</QuantityString>")
    err = refused(text)
    assert err.path.startswith("ProductionSchedule/ProductionRequest[3]/")


def test_oversize_document_refused_before_parsing() -> None:
    err = refused(SCHEDULE, max_bytes=len(SCHEDULE) - 1)
    assert err.path == "/"
    assert f"limit of {len(SCHEDULE) - 1} bytes" in err.reason
    assert parse_production_schedule(SCHEDULE, max_bytes=len(SCHEDULE)) == EXPECTED
    # A str is measured in UTF-8 bytes, not characters.
    text = replace_once("Copper strip 8 mm", "铜带 8 mm")
    assert len(text) < len(text.encode())
    assert refused(text, max_bytes=len(text)).path == "/"


def test_default_limit_is_ten_mib() -> None:
    padding = "<!--" + "x" * (10 << 20) + "-->"
    err = refused(replace_once("<ProductionSchedule ", padding + "<ProductionSchedule "))
    assert "limit of 10485760 bytes" in err.reason


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE ProductionSchedule [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ProductionSchedule xmlns="http://www.mesa.org/xml/B2MML">
  <ProductionRequest>
    <ID>WO-1</ID>
    <Description>&lol9;</Description>
  </ProductionRequest>
</ProductionSchedule>
"""


def test_billion_laughs_refused() -> None:
    err = refused(BILLION_LAUGHS)
    assert err.path == "/"
    assert "entity declarations are refused" in err.reason


def test_external_entity_refused() -> None:
    xxe = replace_once(
        "<ProductionSchedule ",
        '<!DOCTYPE ProductionSchedule [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<ProductionSchedule ',
    )
    xxe = replace_once("Copper strip 8 mm, hot rolled", "&e;", xxe)
    err = refused(xxe)
    assert err.path == "/"
    assert "entity declarations are refused" in err.reason
    assert "file:///etc/passwd" in err.reason


def test_wrong_root_wrong_namespace_and_empty_schedule() -> None:
    assert str(refused(f'<ProductionPerformance xmlns="{B2MML_NS}"/>')) == (
        "/: the root element is ProductionPerformance, expected ProductionSchedule"
    )
    err = refused('<ProductionSchedule xmlns="urn:example"><ProductionRequest/></ProductionSchedule>')
    assert err.path == "ProductionSchedule"
    assert "namespace 'urn:example' is not B2MML" in err.reason
    assert refused(
        f'<ProductionSchedule xmlns="{B2MML_NS}"><ID>x</ID></ProductionSchedule>'
    ).reason.startswith("no ProductionRequest")
    # Requests in another namespace than the root are not silently dropped: the schedule is empty, refused.
    stray = replace_once(
        "<ProductionRequest>\n    <ID>WO-2026-1001", '<ProductionRequest xmlns="">\n    <ID>WO-2026-1001'
    )
    stray = re.sub(r"<ProductionRequest>.*?</ProductionRequest>", "", stray, flags=re.S)
    assert stray.count("<ProductionRequest") == 1
    assert refused(stray).reason.startswith("no ProductionRequest")


def test_error_is_a_value_error() -> None:
    assert issubclass(B2mmlError, ValueError)


# --- export ----------------------------------------------------------------------------------------------

CST = timezone(timedelta(hours=8))
PERFORMANCE = [
    OrderPerformance(
        id="WO-2026-1001",
        product="gearbox-housing-a",
        asset="qijiang/machining/gearbox-line/cnc-1",
        status=OrderStatus.COMPLETED,
        quantity=400,
        unit="parts",
        actual_start=datetime(2026, 12, 1, 8, 5, tzinfo=CST),
        actual_end=datetime(2026, 12, 1, 19, 40, tzinfo=CST),
        total=412,
        good=398,
        scrap=9,
        rework=5,
        energy_kwh=151.2,
    ),
    OrderPerformance(
        id="WO-2026-1002",
        product="cu-strip-8mm",
        asset="qijiang/copper/hot-rolling/mill-1",
        status=OrderStatus.RUNNING,
        quantity=60,
        unit="coils",
        actual_start=datetime(2026, 12, 2, 6, 10, tzinfo=UTC),
        total=31.5,
        good=30.5,
        scrap=1,
    ),
    OrderPerformance(
        id="WO-2026-1003",
        product="al-6063-profile",
        asset="qijiang/aluminium/extrusion/press-1",
        status=OrderStatus.PLANNED,
        quantity=12.5,
        unit="t",
    ),
]
PUBLISHED = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def q(el: ET.Element, path: str) -> str | None:
    found = el.find(path, NS)
    return None if found is None else found.text


def test_performance_export_parses_back_with_the_figures() -> None:
    data = production_performance(PERFORMANCE, schedule_id="PS-2026-W49", published=PUBLISHED)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ProductionPerformance ')
    assert data.count(b"<?xml") == 1
    root = ET.fromstring(data)
    assert root.tag == f"{{{B2MML_NS}}}ProductionPerformance"
    assert q(root, "b:ID") == "PS-2026-W49"
    assert q(root, "b:ProductionScheduleID") == "PS-2026-W49"
    assert q(root, "b:PublishedDate") == "2026-12-02T12:00:00Z"
    responses = root.findall("b:ProductionResponse", NS)
    assert [q(r, "b:ID") for r in responses] == ["WO-2026-1001", "WO-2026-1002", "WO-2026-1003"]

    first = responses[0]
    assert q(first, "b:ProductionRequestID") == "WO-2026-1001"
    assert q(first, "b:StartTime") == "2026-12-01T00:05:00Z"
    assert q(first, "b:EndTime") == "2026-12-01T11:40:00Z"
    assert q(first, "b:ResponseState") == "Completed"
    seg = first.find("b:SegmentResponse", NS)
    assert seg is not None
    assert q(seg, "b:ProductSegmentID") == "gearbox-housing-a"
    assert q(seg, "b:EquipmentActual/b:EquipmentID") == "qijiang/machining/gearbox-line/cnc-1"
    assert q(seg, "b:MaterialProducedActual/b:MaterialDefinitionID") == "gearbox-housing-a"
    figures = {
        q(x, "b:Key"): (float(q(x, "b:QuantityString") or "nan"), q(x, "b:UnitOfMeasure"))
        for x in seg.findall("b:MaterialProducedActual/b:Quantity", NS)
    }
    assert figures == {
        "total": (412, "parts"),
        "good": (398, "parts"),
        "scrap": (9, "parts"),
        "rework": (5, "parts"),
    }

    second = responses[1]
    assert q(second, "b:EndTime") is None  # still running: no end written
    assert q(second, "b:ResponseState") == "Running"
    assert (
        q(second, "b:SegmentResponse/b:MaterialProducedActual/b:Quantity[b:Key='total']/b:QuantityString")
        == "31.5"
    )

    third = responses[2]
    state = third.find("b:ResponseState", NS)
    assert state is not None and state.text == "Other" and state.get("OtherValue") == "planned"


@pytest.mark.parametrize(
    ("status", "state", "other"),
    [
        (OrderStatus.PLANNED, "Other", "planned"),
        (OrderStatus.RELEASED, "Ready", None),
        (OrderStatus.RUNNING, "Running", None),
        (OrderStatus.COMPLETED, "Completed", None),
        (OrderStatus.CANCELLED, "Aborted", None),
    ],
)
def test_performance_response_state_per_status(status: OrderStatus, state: str, other: str | None) -> None:
    order = PERFORMANCE[0].model_copy(update={"status": status})
    root = ET.fromstring(production_performance([order], published=PUBLISHED))
    el = root.find("b:ProductionResponse/b:ResponseState", NS)
    assert el is not None
    assert (el.text, el.get("OtherValue")) == (state, other)


def test_performance_elements_in_schema_order() -> None:
    root = ET.fromstring(production_performance(PERFORMANCE[:1], schedule_id="S", published=PUBLISHED))
    local = [c.tag.split("}")[1] for c in root]
    assert local == ["ID", "PublishedDate", "ProductionScheduleID", "ProductionResponse"]
    response = root.find("b:ProductionResponse", NS)
    assert response is not None
    assert [c.tag.split("}")[1] for c in response] == [
        "ID",
        "ProductionRequestID",
        "StartTime",
        "EndTime",
        "SegmentResponse",
        "ResponseState",
    ]
    quantity = response.find("b:SegmentResponse/b:MaterialProducedActual/b:Quantity", NS)
    assert quantity is not None
    assert [c.tag.split("}")[1] for c in quantity] == ["QuantityString", "UnitOfMeasure", "Key"]


def test_performance_default_id_and_published_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    root = ET.fromstring(production_performance([]))
    published = datetime.fromisoformat(q(root, "b:PublishedDate") or "")
    assert before <= published <= datetime.now(UTC)
    assert q(root, "b:ID") == f"performance-{published:%Y%m%dT%H%M%SZ}"
    assert root.find("b:ProductionScheduleID", NS) is None
    assert root.findall("b:ProductionResponse", NS) == []


def test_performance_export_escapes_text_and_refuses_unwritable_characters() -> None:
    odd = PERFORMANCE[2].model_copy(update={"product": "a<b&c"})
    root = ET.fromstring(production_performance([odd], published=PUBLISHED))
    assert q(root, "b:ProductionResponse/b:SegmentResponse/b:ProductSegmentID") == "a<b&c"
    with pytest.raises(ValueError, match="characters XML cannot carry"):
        production_performance([PERFORMANCE[2].model_copy(update={"asset": "a/b\x01"})], published=PUBLISHED)
    with pytest.raises(ValueError, match="without a zone"):
        production_performance([], published=datetime(2026, 12, 2, 12, 0))


def test_performance_export_uses_the_default_namespace() -> None:
    data = production_performance(PERFORMANCE, published=PUBLISHED)
    assert b'<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML">' in data
    assert b"ns0:" not in data
    # ...without registering a prefix for everyone else in the process.
    assert b"ns0:" in ET.tostring(ET.Element(f"{{{B2MML_NS}}}X"))
