"""Work orders from a CSV file (a spreadsheet export or a hand-written list) into OrderSpecs.

A bad file is refused whole, naming the line, the column and the reason; nothing of it is imported.

The first row is the header: ``id,product,asset,quantity`` are required, ``unit,planned_start,planned_end,
priority,description`` optional, in any order; names are matched without regard to case or surrounding
spaces, and any other column is refused (a typo would otherwise drop data silently). Fields are separated
by commas and quoted the usual way (RFC 4180, Python's ``csv`` module). The file is UTF-8, with or without
a byte-order mark (what Excel writes for "CSV UTF-8"). Values are stripped of surrounding spaces; an empty
optional value takes the default (unit ``units``, priority 0, no times, no description). Blank rows, and
rows whose every field is empty, are skipped.

Values follow the same rules as the B2MML importer (:mod:`mes.b2mml`): quantity a decimal number > 0,
times ISO 8601 *with* a zone (``2026-12-01T08:00:00+08:00``; without one they are refused), the end after
the start, priority an integer, the asset an asset path (one of ``known_assets`` when given), ids unique
in the file. Line numbers are the file's own (the header is line 1; a quoted value spanning lines counts
them all, and the error names the line the row starts on).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection
from datetime import datetime

from pydantic import ValidationError

from mes.b2mml import (
    DEFAULT_MAX_BYTES,
    check_asset,
    first_validation_error,
    parse_aware_time,
    parse_integer,
    parse_quantity,
)
from mes.order_spec import OrderSpec

REQUIRED_COLUMNS = ("id", "product", "asset", "quantity")
OPTIONAL_COLUMNS = ("unit", "planned_start", "planned_end", "priority", "description")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


class OrderCsvError(ValueError):
    """A CSV order file refused: ``line`` (from 1, the header is 1), ``column`` (None: the whole line)."""

    def __init__(self, line: int, column: str | None, reason: str, *, name: str = "orders.csv") -> None:
        where = f"{name} line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {reason}")
        self.line = line
        self.column = column
        self.reason = reason


def _decode(data: bytes | str, max_bytes: int, name: str) -> str:
    if isinstance(data, str):
        size = len(data) if len(data) > max_bytes else len(data.encode("utf-8", "surrogatepass"))
        text = data.removeprefix("\ufeff")
    else:
        size = len(data)
        text = ""
    if size > max_bytes:
        raise OrderCsvError(
            1, None, f"the file is larger than the limit of {max_bytes} bytes ({size} bytes)", name=name
        )
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise OrderCsvError(
                line, None, f"not UTF-8 (byte {data[exc.start]:#04x}); save the file as CSV UTF-8", name=name
            ) from None
    return text


def _header(row: list[str], name: str) -> list[str]:
    columns = [c.strip().lower() for c in row]
    if len(columns) == 1 and any(sep in row[0] for sep in (";", "\t")):
        raise OrderCsvError(
            1, None, f"the header has one column {row[0]!r}: separate the columns with commas", name=name
        )
    seen: set[str] = set()
    for raw, column in zip(row, columns):
        if column not in COLUMNS:
            raise OrderCsvError(
                1, raw.strip() or "(empty)", f"unknown column (allowed: {', '.join(COLUMNS)})", name=name
            )
        if column in seen:
            raise OrderCsvError(1, column, "column given twice", name=name)
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise OrderCsvError(1, None, f"required column(s) missing: {', '.join(missing)}", name=name)
    return columns


_PARSERS: dict[str, Callable[[str], object]] = {
    "quantity": lambda text: parse_quantity(text, what=""),
    "planned_start": parse_aware_time,
    "planned_end": parse_aware_time,
    "priority": parse_integer,
}


def parse_orders_csv(
    data: bytes | str,
    known_assets: Collection[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    name: str = "orders.csv",
) -> list[OrderSpec]:
    """The orders of a CSV file, or :class:`OrderCsvError` for the first thing wrong with it.

    ``known_assets``: asset paths an order may run on (None: any well-formed asset path).
    ``max_bytes``: larger files are refused before reading. ``name``: the file name used in messages.
    """
    text = _decode(data, max_bytes, name)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1  # the line the current row starts on
    try:
        header = next(reader, None)
        if header is None or not any(c.strip() for c in header):
            raise OrderCsvError(
                1,
                None,
                f"no header row: the first line names the columns, e.g. {','.join(COLUMNS)}",
                name=name,
            )
        columns = _header(header, name)
        orders: list[OrderSpec] = []
        first_line: dict[str, int] = {}
        line = reader.line_num + 1
        for row in reader:
            if any(v.strip() for v in row):
                order = _order(row, columns, line, known_assets, name)
                if order.id in first_line:
                    raise OrderCsvError(
                        line,
                        "id",
                        f"duplicate id {order.id} (first on line {first_line[order.id]})",
                        name=name,
                    )
                first_line[order.id] = line
                orders.append(order)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise OrderCsvError(line, None, f"not valid CSV: {exc}", name=name) from None
    return orders


def _order(
    row: list[str], columns: list[str], line: int, known_assets: Collection[str] | None, name: str
) -> OrderSpec:
    if len(row) != len(columns):
        raise OrderCsvError(line, None, f"{len(row)} fields, the header has {len(columns)}", name=name)
    fields: dict[str, object] = {}
    texts = {column: raw.strip() for column, raw in zip(columns, row)}
    for column, value in texts.items():
        if not value:
            if column in REQUIRED_COLUMNS:
                raise OrderCsvError(line, column, "missing", name=name)
            continue
        try:
            if column == "asset":
                fields[column] = check_asset(value, known_assets)
            else:
                fields[column] = _PARSERS.get(column, str)(value)
        except ValueError as exc:
            raise OrderCsvError(line, column, str(exc), name=name) from None
    start, end = fields.get("planned_start"), fields.get("planned_end")
    if isinstance(start, datetime) and isinstance(end, datetime) and end <= start:
        reason = f"{texts['planned_end']} is not after planned_start {texts['planned_start']}"
        raise OrderCsvError(line, "planned_end", reason, name=name)
    try:
        return OrderSpec.model_validate(fields)
    except ValidationError as exc:
        field, msg = first_validation_error(exc)
        raise OrderCsvError(line, field or "planned_end", msg, name=name) from None
