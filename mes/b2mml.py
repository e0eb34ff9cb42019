"""ISA-95 / B2MML for the MES: ProductionSchedule documents in (as OrderSpecs), ProductionPerformance out.

A bad schedule is refused whole, naming the element and the reason; nothing of it is imported.

Reading
=======

Documents in the B2MML namespace ``http://www.mesa.org/xml/B2MML`` (V0700 and later), in the V0600
namespace ``http://www.mesa.org/xml/B2MML-V0600``, or in no namespace at all are read; the root must be
``ProductionSchedule``. Elements this importer does not use are ignored. Each ``ProductionRequest`` is one
order; its *segment* is its first ``SegmentRequirement`` (further segments are ignored):

==================  ===========================================================================================
OrderSpec field     Taken from (first found, relative to the ProductionRequest)
==================  ===========================================================================================
id                  ``ID`` (required)
product             ``SegmentRequirement/ProductSegmentID``, else ``ProductProductionRuleID``, else
                    ``SegmentRequirement/MaterialProducedRequirement/MaterialDefinitionID`` (one is required)
asset               ``SegmentRequirement/EquipmentRequirement/EquipmentID`` (the first EquipmentRequirement),
                    else ``HierarchyScope/EquipmentID``; a nested HierarchyScope chain is joined with ``/``
                    (``qijiang`` › ``machining`` › ``gearbox-line`` › ``cnc-1`` → ``qijiang/machining/…/cnc-1``).
                    Required; must be an asset path, and one of ``known_assets`` when those are given.
quantity            ``SegmentRequirement/MaterialProducedRequirement/Quantity/QuantityString`` (first of each;
                    required; a decimal number > 0)
unit                the same Quantity's ``UnitOfMeasure`` (default ``units``)
planned_start       ``StartTime``, else ``SegmentRequirement/EarliestStartTime``, else ``SegmentRequirement/StartTime``
planned_end         ``EndTime``, else ``SegmentRequirement/LatestEndTime``, else ``SegmentRequirement/EndTime``
priority            ``Priority`` (an integer, default 0)
description         the first ``Description`` (default empty)
==================  ===========================================================================================

Times are ISO 8601 / xs:dateTime *with* a zone (``2026-12-01T08:00:00+08:00`` or ``…Z``); a time without a
zone is refused, because guessing the plant's zone would shift the plan by hours. The end must be after
the start. Order ids must be unique within the document.

Every refusal is a :class:`B2mmlError` naming the element as a path such as
``ProductionSchedule/ProductionRequest[2]/SegmentRequirement/MaterialProducedRequirement/Quantity/QuantityString``
(``ProductionRequest`` is always numbered from 1; the other steps are the first element of that name) and
the reason. Document-level refusals name ``/``: over ``max_bytes``, not well-formed (with the parser's line
and column, the column counted from 1), a DTD with entity declarations, the wrong root, or no
ProductionRequest at all (an empty schedule is almost always the wrong file or the wrong namespace).

Parsing uses ``defusedxml.ElementTree``: documents that declare entities are refused (the "billion laughs"
expansion bomb, and XXE — external entities that would read local files or URLs into the document);
nothing is expanded and nothing is fetched (no external DTD either).

Writing
=======

:func:`production_performance` writes a ``ProductionPerformance`` (default namespace
``http://www.mesa.org/xml/B2MML``, UTF-8, with an XML declaration) with ``ID``, ``PublishedDate``,
``ProductionScheduleID`` (when given) and one ``ProductionResponse`` per order, elements in schema order:

``ID`` and ``ProductionRequestID`` = order id, ``StartTime``/``EndTime`` = actual start/end (when known),
``SegmentResponse`` (``ID`` = order id, ``ProductSegmentID`` = product, ``ActualStartTime``/``ActualEndTime``,
``EquipmentActual/EquipmentID`` = asset, ``MaterialProducedActual`` with ``MaterialDefinitionID`` = product and
four ``Quantity`` entries — ``QuantityString``, ``UnitOfMeasure``, ``Key`` = ``total``, ``good``, ``scrap``,
``rework``) and ``ResponseState`` = the order status in B2MML's vocabulary (see :data:`RESPONSE_STATE`).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pyexpat import ErrorString
from typing import TypeVar

import defusedxml
import defusedxml.ElementTree as DET
from pydantic import ValidationError

from mes.order_spec import OrderPerformance, OrderSpec, OrderStatus
from shopfloor.model import AssetPath

_T = TypeVar("_T")

B2MML_NS = "http://www.mesa.org/xml/B2MML"
B2MML_V0600_NS = "http://www.mesa.org/xml/B2MML-V0600"
#: Namespaces a ProductionSchedule may be in ("" = none).
ACCEPTED_NAMESPACES = ("", B2MML_NS, B2MML_V0600_NS)
DEFAULT_MAX_BYTES = 10 << 20

#: Order status → B2MML ResponseState (Ready/Running/Completed/Aborted/Holding/Paused/Other). ``planned``
#: has no B2MML word: it is written as ``Other`` with ``OtherValue="planned"``, as the schema provides.
RESPONSE_STATE: dict[OrderStatus, str] = {
    OrderStatus.PLANNED: "Other",
    OrderStatus.RELEASED: "Ready",
    OrderStatus.RUNNING: "Running",
    OrderStatus.COMPLETED: "Completed",
    OrderStatus.CANCELLED: "Aborted",
}

_DECIMAL_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class B2mmlError(ValueError):
    """A B2MML document refused: ``path`` is the element (XPath-like, ``/`` for the whole document)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --- value rules, shared with mes.order_csv ------------------------------------------------------------


def parse_quantity(text: str, what: str = "quantity") -> float:
    """A decimal number > 0 (``400``, ``12.5``, ``1e3``); ValueError with the reason (naming ``what``) otherwise."""
    if not _DECIMAL_RE.match(text):
        raise ValueError(f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"too large: {text!r}")
    if value <= 0:
        raise ValueError(f"{what} must be > 0, not {text}".lstrip())
    return value


def parse_integer(text: str) -> int:
    """A whole number (``-5``, ``10``); ValueError with the reason otherwise."""
    if not _INTEGER_RE.match(text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def parse_aware_time(text: str) -> datetime:
    """An ISO 8601 date-time with a zone; a time without one is refused, never guessed."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"no time zone in {text!r}: write it with one, e.g. 2026-12-01T08:00:00+08:00 or 2026-12-01T00:00:00Z"
        )
    return value


def check_asset(text: str, known_assets: Collection[str] | None) -> str:
    """An asset path, and one of ``known_assets`` when those are given."""
    try:
        AssetPath(text)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if known_assets is not None and text not in known_assets:
        raise ValueError(f"unknown asset {text}")
    return text


def first_validation_error(exc: ValidationError) -> tuple[str | None, str]:
    """The field (None for a whole-model rule) and message of pydantic's first complaint."""
    err = exc.errors(include_url=False)[0]
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else None
    msg = str(err.get("msg", "invalid"))
    return field, msg.removeprefix("Value error, ")


# --- reading ---------------------------------------------------------------------------------------------


def _size_of(data: bytes | str, max_bytes: int) -> int:
    if isinstance(data, str):
        if len(data) > max_bytes:  # every character is at least one byte
            return len(data)
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data)


def _parse_xml(data: bytes | str, max_bytes: int) -> ET.Element:
    size = _size_of(data, max_bytes)
    if size > max_bytes:
        raise B2mmlError("/", f"document is larger than the limit of {max_bytes} bytes ({size} bytes)")
    try:
        return DET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except ET.ParseError as exc:
        line, column = exc.position
        try:
            what = ErrorString(exc.code)
        except (TypeError, ValueError):
            what = str(exc).split(":", 1)[0]
        raise B2mmlError("/", f"not well-formed XML at line {line}, column {column + 1}: {what}") from None
    except defusedxml.DefusedXmlException as exc:
        raise B2mmlError(
            "/", f"entity declarations are refused (guard against entity expansion and XXE): {exc}"
        ) from None


class _Doc:
    """Namespace-aware navigation that keeps the XPath-like path of every element it hands out."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def tag(self, name: str) -> str:
        return f"{{{self.ns}}}{name}" if self.ns else name

    def child(self, el: ET.Element, path: str, name: str) -> tuple[ET.Element | None, str]:
        return el.find(self.tag(name)), f"{path}/{name}"

    def children(self, el: ET.Element, name: str) -> list[ET.Element]:
        return el.findall(self.tag(name))

    def walk(self, el: ET.Element | None, path: str, *names: str) -> tuple[ET.Element | None, str]:
        """Follow first children ``names``; the element (None if a step is missing) and its path."""
        for name in names:
            if el is None:
                path = f"{path}/{name}"
                continue
            el, path = self.child(el, path, name)
        return el, path


def _text(el: ET.Element | None) -> str | None:
    """The stripped text of an element; None when it is missing or empty."""
    if el is None:
        return None
    text = (el.text or "").strip()
    return text or None


def _namespace_of(root: ET.Element) -> tuple[str, str]:
    tag = root.tag
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def parse_production_schedule(
    data: bytes | str, known_assets: Collection[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[OrderSpec]:
    """The orders of a B2MML ProductionSchedule, or :class:`B2mmlError` for the first thing wrong with it.

    ``known_assets``: asset paths an order may run on (None: any well-formed asset path).
    ``max_bytes``: documents larger than this are refused before parsing.
    """
    root = _parse_xml(data, max_bytes)
    ns, local = _namespace_of(root)
    if local != "ProductionSchedule":
        raise B2mmlError("/", f"the root element is {local}, expected ProductionSchedule")
    if ns not in ACCEPTED_NAMESPACES:
        raise B2mmlError(
            "ProductionSchedule",
            f"namespace {ns!r} is not B2MML (expected {B2MML_NS}, {B2MML_V0600_NS} or no namespace)",
        )
    doc = _Doc(ns)
    requests = doc.children(root, "ProductionRequest")
    if not requests:
        raise B2mmlError(
            "ProductionSchedule",
            "no ProductionRequest: nothing to import (check the namespace of the request elements)",
        )
    orders: list[OrderSpec] = []
    first_seen: dict[str, str] = {}
    for n, request in enumerate(requests, start=1):
        path = f"ProductionSchedule/ProductionRequest[{n}]"
        order = _order(doc, request, path, known_assets)
        if order.id in first_seen:
            raise B2mmlError(f"{path}/ID", f"duplicate order id {order.id} (also in {first_seen[order.id]})")
        first_seen[order.id] = path
        orders.append(order)
    return orders


def _required(doc: _Doc, el: ET.Element, path: str, *names: str) -> tuple[str, str]:
    found, at = doc.walk(el, path, *names)
    text = _text(found)
    if text is None:
        raise B2mmlError(at, "missing" if found is None else "empty")
    return text, at


def _first_of(candidates: list[tuple[ET.Element | None, str]]) -> tuple[str, str] | None:
    for el, at in candidates:
        text = _text(el)
        if text is not None:
            return text, at
    return None


def _scope_asset(doc: _Doc, request: ET.Element, path: str) -> tuple[str, str] | None:
    """``HierarchyScope/EquipmentID``; nested scopes (site › area › line › unit) joined with ``/``."""
    scope, at = doc.child(request, path, "HierarchyScope")
    parts: list[str] = []
    last = at
    while scope is not None:
        eq, eq_at = doc.child(scope, at, "EquipmentID")
        text = _text(eq)
        if text is not None:
            parts.append(text)
            last = eq_at
        scope, at = doc.child(scope, at, "HierarchyScope")
    return ("/".join(parts), last) if parts else None


def _value(at: str, parse: Callable[[str], _T], text: str) -> _T:
    try:
        return parse(text)
    except ValueError as exc:
        raise B2mmlError(at, str(exc)) from None


def _order(doc: _Doc, request: ET.Element, path: str, known_assets: Collection[str] | None) -> OrderSpec:
    fields: dict[str, object] = {}
    where: dict[str, str] = {}  # field -> element path it came from, for pydantic's complaints

    def put(field: str, value: object, at: str) -> None:
        fields[field] = value
        where[field] = at

    order_id, at = _required(doc, request, path, "ID")
    put("id", order_id, at)

    seg, seg_path = doc.child(request, path, "SegmentRequirement")
    produced, produced_path = doc.walk(seg, seg_path, "MaterialProducedRequirement")

    product = _first_of(
        [
            doc.walk(seg, seg_path, "ProductSegmentID"),
            doc.child(request, path, "ProductProductionRuleID"),
            doc.walk(produced, produced_path, "MaterialDefinitionID"),
        ]
    )
    if product is None:
        raise B2mmlError(
            f"{seg_path}/ProductSegmentID",
            "missing: give SegmentRequirement/ProductSegmentID, ProductProductionRuleID or "
            "SegmentRequirement/MaterialProducedRequirement/MaterialDefinitionID",
        )
    put("product", *product)

    asset = _first_of([doc.walk(seg, seg_path, "EquipmentRequirement", "EquipmentID")]) or _scope_asset(
        doc, request, path
    )
    if asset is None:
        raise B2mmlError(
            f"{seg_path}/EquipmentRequirement/EquipmentID",
            "missing: give SegmentRequirement/EquipmentRequirement/EquipmentID or HierarchyScope/EquipmentID",
        )
    put("asset", _value(asset[1], lambda t: check_asset(t, known_assets), asset[0]), asset[1])

    quantity_el, quantity_path = doc.walk(produced, produced_path, "Quantity")
    qty_el, at = doc.walk(quantity_el, quantity_path, "QuantityString")
    qty_text = _text(qty_el)
    if qty_text is None:
        raise B2mmlError(at, "missing: the order needs a quantity to make" if qty_el is None else "empty")
    put("quantity", _value(at, parse_quantity, qty_text), at)
    unit_el, unit_path = doc.walk(quantity_el, quantity_path, "UnitOfMeasure")
    unit = _text(unit_el)
    if unit is not None:
        put("unit", unit, unit_path)

    times: dict[str, tuple[datetime, str]] = {}
    for field, own, seg_names in (
        ("planned_start", "StartTime", ("EarliestStartTime", "StartTime")),
        ("planned_end", "EndTime", ("LatestEndTime", "EndTime")),
    ):
        found = _first_of([doc.child(request, path, own), *(doc.walk(seg, seg_path, n) for n in seg_names)])
        if found is not None:
            value = _value(found[1], parse_aware_time, found[0])
            times[field] = (value, found[1])
            put(field, value, found[1])
    if "planned_start" in times and "planned_end" in times:
        (start, _), (end, end_at) = times["planned_start"], times["planned_end"]
        if end <= start:
            raise B2mmlError(end_at, f"the end {end.isoformat()} is not after the start {start.isoformat()}")

    priority_el, at = doc.child(request, path, "Priority")
    priority = _text(priority_el)
    if priority is not None:
        put("priority", _value(at, parse_integer, priority), at)

    description_el, at = doc.child(request, path, "Description")
    description = _text(description_el)
    if description is not None:
        put("description", description, at)

    try:
        return OrderSpec.model_validate(fields)
    except ValidationError as exc:
        bad, msg = first_validation_error(exc)
        # A whole-model complaint (no field) is about the times: name the end.
        raise B2mmlError(where.get(bad or "planned_end", path), msg) from None


# --- writing ---------------------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time without a zone: {value.isoformat()}")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return f"{value:.15g}"


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, name)
    if text is not None:
        if _XML_ILLEGAL_RE.search(text):
            raise ValueError(f"{name}: {text!r} holds characters XML cannot carry")
        el.text = text
    return el


def production_performance(
    orders: Sequence[OrderPerformance], *, schedule_id: str | None = None, published: datetime | None = None
) -> bytes:
    """A B2MML ProductionPerformance document (UTF-8 bytes) reporting what each order produced.

    ``schedule_id``: the ProductionSchedule this answers; it becomes the document ID and ProductionScheduleID.
    Without it the ID is ``performance-<published, UTC>``. ``published`` defaults to now.
    """
    published = published or datetime.now(UTC)
    published_text = _time(published)
    # The default namespace is declared as an attribute so that no global ElementTree prefix is registered.
    root = ET.Element("ProductionPerformance", {"xmlns": B2MML_NS})
    _sub(root, "ID", schedule_id or f"performance-{published.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    _sub(root, "PublishedDate", published_text)
    if schedule_id is not None:
        _sub(root, "ProductionScheduleID", schedule_id)
    for order in orders:
        response = _sub(root, "ProductionResponse")
        _sub(response, "ID", order.id)
        _sub(response, "ProductionRequestID", order.id)
        if order.actual_start is not None:
            _sub(response, "StartTime", _time(order.actual_start))
        if order.actual_end is not None:
            _sub(response, "EndTime", _time(order.actual_end))
        segment = _sub(response, "SegmentResponse")
        _sub(segment, "ID", order.id)
        _sub(segment, "ProductSegmentID", order.product)
        if order.actual_start is not None:
            _sub(segment, "ActualStartTime", _time(order.actual_start))
        if order.actual_end is not None:
            _sub(segment, "ActualEndTime", _time(order.actual_end))
        _sub(_sub(segment, "EquipmentActual"), "EquipmentID", order.asset)
        material = _sub(segment, "MaterialProducedActual")
        _sub(material, "MaterialDefinitionID", order.product)
        for key, value in (
            ("total", order.total),
            ("good", order.good),
            ("scrap", order.scrap),
            ("rework", order.rework),
        ):
            quantity = _sub(material, "Quantity")
            _sub(quantity, "QuantityString", _number(value))
            _sub(quantity, "UnitOfMeasure", order.unit)
            _sub(quantity, "Key", key)
        state = _sub(response, "ResponseState", RESPONSE_STATE[order.status])
        if RESPONSE_STATE[order.status] == "Other":
            state.set("OtherValue", order.status.value)
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
