"""mes.order_csv: a CSV order file becomes exact OrderSpecs or is refused whole, naming line, column and reason;
the example schedule and CSV of the demo plant parse and agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mes.b2mml import parse_production_schedule
from mes.order_csv import OrderCsvError, parse_orders_csv
from mes.order_spec import OrderSpec

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,product,asset,quantity,unit,planned_start,planned_end,priority,description\n"
GOOD = (
    HEADER + "WO-1,gearbox-housing-a,qijiang/machining/gearbox-line/cnc-1,400,parts,"
    '2026-12-01T08:00:00+08:00,2026-12-01T20:00:00+08:00,10,"Housing A, bores"\n'
    "WO-2,cu-strip-8mm,qijiang/copper/hot-rolling/mill-1,60,coils,,,,\n"
)
EXPECTED = [
    OrderSpec(
        id="WO-1",
        product="gearbox-housing-a",
        asset="qijiang/machining/gearbox-line/cnc-1",
        quantity=400,
        unit="parts",
        planned_start=datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        planned_end=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        priority=10,
        description="Housing A, bores",
    ),
    OrderSpec(
        id="WO-2",
        product="cu-strip-8mm",
        asset="qijiang/copper/hot-rolling/mill-1",
        quantity=60,
        unit="coils",
    ),
]
KNOWN = {"qijiang/machining/gearbox-line/cnc-1", "qijiang/copper/hot-rolling/mill-1"}


def refused(data: bytes | str, **kw: object) -> OrderCsvError:
    with pytest.raises(OrderCsvError) as info:
        parse_orders_csv(data, **kw)  # type: ignore[arg-type]
    return info.value


def test_good_file_gives_exact_orders() -> None:
    assert parse_orders_csv(GOOD.encode(), known_assets=KNOWN) == EXPECTED
    assert parse_orders_csv(GOOD) == EXPECTED


def test_utf8_with_bom_crlf_and_chinese_text() -> None:
    text = GOOD.replace("Housing A, bores", "齿轮箱壳体 A").replace("\n", "\r\n")
    orders = parse_orders_csv(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert orders[0].description == "齿轮箱壳体 A"
    assert orders[0].id == "WO-1"  # the BOM did not become part of the first column name or value
    assert parse_orders_csv("\ufeff" + text)[1] == EXPECTED[1]


def test_only_required_columns_any_order_any_case() -> None:
    data = " Quantity ,ASSET,id,Product\n5,a/b,X-1,p\n"
    assert parse_orders_csv(data) == [OrderSpec(id="X-1", product="p", asset="a/b", quantity=5)]


def test_blank_and_empty_rows_are_skipped_and_lines_still_count() -> None:
    data = "id,product,asset,quantity\n\nA,p,a/b,1\n,,,\n\nB,p,a/b,-2\n"
    err = refused(data)
    assert (err.line, err.column) == (6, "quantity")


def test_header_only_gives_no_orders() -> None:
    assert parse_orders_csv("id,product,asset,quantity\n") == []


def test_unknown_column() -> None:
    err = refused("id,product,asset,quantity,qty\nA,p,a/b,1,1\n")
    assert (err.line, err.column) == (1, "qty")
    assert str(err).startswith(
        "orders.csv line 1, column qty: unknown column (allowed: id, product, asset, quantity"
    )


def test_missing_required_column_and_duplicate_column() -> None:
    assert (
        str(refused("id,product,quantity\nA,p,1\n")) == "orders.csv line 1: required column(s) missing: asset"
    )
    assert (
        str(refused("id,product,asset,quantity,ID\n")) == "orders.csv line 1, column id: column given twice"
    )


def test_no_header_and_wrong_separator() -> None:
    assert refused(b"").reason.startswith("no header row")
    assert refused(b"\xef\xbb\xbf\n").reason.startswith("no header row")
    err = refused("id;product;asset;quantity\nA;p;a/b;1\n")
    assert err.line == 1
    assert "separate the columns with commas" in err.reason


def test_quantity_must_be_positive_message() -> None:
    data = "id,product,asset,quantity\nA,p,a/b,1\nB,p,a/b,0\n"
    assert str(refused(data)) == "orders.csv line 3, column quantity: must be > 0, not 0"


@pytest.mark.parametrize("value", ["abc", "1,5", "NaN", "1_000"])
def test_quantity_not_a_number(value: str) -> None:
    err = refused(f'id,product,asset,quantity\nA,p,a/b,"{value}"\n')
    assert (err.line, err.column, err.reason) == (2, "quantity", f"not a number: {value!r}")


def test_missing_required_value() -> None:
    assert (
        str(refused("id,product,asset,quantity\nA, ,a/b,1\n")) == "orders.csv line 2, column product: missing"
    )


def test_time_without_zone_and_end_before_start() -> None:
    row = "A,p,a/b,1,{start},{end}\n"
    head = "id,product,asset,quantity,planned_start,planned_end\n"
    err = refused(head + row.format(start="2026-12-01T08:00:00", end=""))
    assert (err.line, err.column) == (2, "planned_start")
    assert err.reason.startswith("no time zone in '2026-12-01T08:00:00'")
    err = refused(head + row.format(start="2026-12-01T08:00:00+08:00", end="2026-12-01T00:00:00Z"))
    assert str(err) == (
        "orders.csv line 2, column planned_end: 2026-12-01T00:00:00Z is not after planned_start 2026-12-01T08:00:00+08:00"
    )


def test_unknown_asset_and_not_a_path() -> None:
    err = refused("id,product,asset,quantity\nA,p,qijiang/x/y,1\n", known_assets=KNOWN)
    assert str(err) == "orders.csv line 2, column asset: unknown asset qijiang/x/y"
    err = refused("id,product,asset,quantity\nA,p,cnc 1,1\n")
    assert err.column == "asset"
    assert "invalid asset path 'cnc 1'" in err.reason


def test_pydantic_messages_name_the_column() -> None:
    err = refused("id,product,asset,quantity\nWO 1,p,a/b,1\n")
    assert (err.line, err.column) == (2, "id")
    assert "order ids are 1-64 characters" in err.reason
    err = refused("id,product,asset,quantity,priority\nA,p,a/b,1,2000\n")
    assert (err.column, err.reason) == ("priority", "Input should be less than or equal to 1000")
    assert refused("id,product,asset,quantity,priority\nA,p,a/b,1,high\n").reason == "not an integer: 'high'"


def test_duplicate_id() -> None:
    data = "id,product,asset,quantity\nA,p,a/b,1\nB,p,a/b,1\nA,q,a/b,2\n"
    assert str(refused(data)) == "orders.csv line 4, column id: duplicate id A (first on line 2)"


def test_wrong_field_count_and_multiline_quoted_values() -> None:
    data = 'id,product,asset,quantity,description\nA,p,a/b,1,"two\nlines"\nB,p,a/b,1\n'
    err = refused(data)
    assert (err.line, err.column) == (4, None)
    assert err.reason == "4 fields, the header has 5"


def test_broken_quoting_names_the_line() -> None:
    err = refused('id,product,asset,quantity\nA,p,a/b,1\nB,"p,a/b,1\n')
    assert err.line == 3
    assert err.reason.startswith("not valid CSV")


def test_not_utf8_names_the_line() -> None:
    err = refused("id,product,asset,quantity\nA,p,a/b,1\nB,Gr\u00fcn,a/b,1\n".encode("latin-1"))
    assert err.line == 3
    assert "not UTF-8" in err.reason


def test_oversize_refused_and_name_used_in_messages() -> None:
    data = GOOD.encode()
    err = refused(data, max_bytes=len(data) - 1, name="upload.csv")
    assert str(err).startswith("upload.csv line 1: the file is larger than the limit")
    assert parse_orders_csv(data, max_bytes=len(data)) == EXPECTED


def test_error_is_a_value_error() -> None:
    assert issubclass(OrderCsvError, ValueError)


# --- the examples ----------------------------------------------------------------------------------------


def demo_assets() -> set[str]:
    plant = yaml.safe_load((ROOT / "examples" / "qijiang-plant.yaml").read_text(encoding="utf-8"))
    return {a["path"] for a in plant["assets"]}


def test_example_schedule_and_csv_parse_and_agree() -> None:
    assets = demo_assets()
    from_xml = parse_production_schedule(
        (ROOT / "examples/mes/schedule.b2mml.xml").read_bytes(), known_assets=assets
    )
    from_csv = parse_orders_csv((ROOT / "examples/mes/orders.csv").read_bytes(), known_assets=assets)
    assert from_xml == from_csv
    by_asset = {o.asset: (o.product, o.quantity, o.unit) for o in from_xml}
    assert by_asset["qijiang/machining/gearbox-line/cnc-1"] == ("gearbox-housing-a", 400, "parts")
    assert by_asset["qijiang/copper/hot-rolling/mill-1"] == ("cu-strip-8mm", 60, "coils")
    assert by_asset["qijiang/aluminium/extrusion/press-1"] == ("al-6063-profile", 300, "billets")
