"""JSON messages to sample rows: which tags a topic feeds, and per tag its value (scaled), source timestamp
and quality, or a counted refusal reason. Pure: no network, no clock but the receive time it is given.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from connectors.mqtt.config import MqttTag
from connectors.mqtt.paths import (
    MISSING,
    Path,
    Refused,
    follow,
    matches,
    minimal_filters,
    parse_path,
    to_ns,
    zone,
)
from shopfloor.model import Quality

_DEFAULT_QUALITY: dict[str, Quality] = {
    "0": Quality.GOOD, "1": Quality.UNCERTAIN, "2": Quality.BAD, "192": Quality.GOOD,
    "true": Quality.GOOD, "false": Quality.BAD,
    '"good"': Quality.GOOD, '"uncertain"': Quality.UNCERTAIN, '"bad"': Quality.BAD,
}  # fmt: skip
_QUALITY_NAMES = {"good": Quality.GOOD, "uncertain": Quality.UNCERTAIN, "bad": Quality.BAD}
_TOPIC_CACHE = 10_000  # topics whose matching tags are remembered


class Row(NamedTuple):
    """One sample: the tag's index among the source's tags, UTC ns, value, quality, text (text signals)."""

    tag: int
    ts_ns: int
    value: float
    quality: int
    text: str | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    index: int
    tag: MqttTag
    value: Path
    timestamp: Path | None
    quality: Path | None
    quality_map: dict[str, Quality] | None
    tz: datetime.tzinfo | None
    text: bool  # a text signal


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(payload: bytes) -> Any:
    """The document of a payload (numbers with a fraction or exponent as Decimal, exact); Refused with
    reason ``empty``, ``encoding`` or ``json``."""
    if not payload:
        raise Refused("empty", "an empty message (a retained message being cleared)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused("encoding", f"the payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise Refused("json", f"the payload is not JSON ({exc})") from None


def _quality_key(raw: Any) -> str:
    if isinstance(raw, str):
        return json.dumps(raw)
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, Decimal) and raw == raw.to_integral_value():
        return str(int(raw))
    return str(raw)


class JsonMapper:
    """The JSON tags of one source: ``filters()`` to subscribe to, ``map()`` for each message."""

    def __init__(self, tags: Sequence[tuple[int, MqttTag]], text_tags: frozenset[int] = frozenset()) -> None:
        self.plans: list[_Plan] = []
        for index, tag in tags:
            assert tag.topic is not None
            qmap = None
            if tag.quality_map is not None:
                qmap = {k: _QUALITY_NAMES[v] for k, v in tag.quality_map.items()}
            self.plans.append(
                _Plan(
                    index,
                    tag,
                    parse_path(tag.value),
                    None if tag.timestamp is None else parse_path(tag.timestamp),
                    None if tag.quality is None else parse_path(tag.quality),
                    qmap,
                    zone(tag.timezone),
                    index in text_tags,
                )
            )
        self._by_topic: dict[str, list[_Plan]] = {}

    def filters(self) -> list[str]:
        return minimal_filters([p.tag.topic for p in self.plans if p.tag.topic is not None])

    def plans_for(self, topic: str) -> list[_Plan]:
        plans = self._by_topic.get(topic)
        if plans is None:
            if len(self._by_topic) >= _TOPIC_CACHE:
                self._by_topic.clear()
            plans = self._by_topic[topic] = [
                p for p in self.plans if p.tag.topic is not None and matches(p.tag.topic, topic)
            ]
        return plans

    def map(
        self, topic: str, payload: bytes, received_ns: int, *, retained: bool = False
    ) -> tuple[list[Row], list[tuple[_Plan | None, Refused]]]:
        """The rows a message gives, and what was refused: (None, reason) for the whole message, (plan,
        reason) for one tag's part of it (the other tags of the topic still get theirs)."""
        plans = self.plans_for(topic)
        if not plans:
            return [], []
        try:
            doc = parse_json(payload)
        except Refused as exc:
            return [], [(None, exc)]
        rows: list[Row] = []
        refused: list[tuple[_Plan | None, Refused]] = []
        for plan in plans:
            try:
                rows.append(self._row(plan, doc, received_ns, retained))
            except Refused as exc:
                refused.append((plan, exc))
        return rows, refused

    def _row(self, plan: _Plan, doc: Any, received_ns: int, retained: bool) -> Row:
        raw = follow(doc, plan.value)
        if raw is MISSING:
            raise Refused("value-missing", f"the payload has nothing at {plan.tag.value}")
        if plan.timestamp is None:
            ts = received_ns
        else:
            raw_ts = follow(doc, plan.timestamp)
            if raw_ts is MISSING:
                raise Refused("timestamp-missing", f"the payload has nothing at {plan.tag.timestamp}")
            ts = to_ns(raw_ts, plan.tag.timestamp_unit, plan.tz)
        quality = Quality.GOOD
        if plan.quality is not None:
            raw_q = follow(doc, plan.quality)
            if raw_q is MISSING:
                raise Refused("quality-missing", f"the payload has nothing at {plan.tag.quality}")
            key = _quality_key(raw_q)
            table = plan.quality_map if plan.quality_map is not None else _DEFAULT_QUALITY
            got = table.get(key)
            if got is None and isinstance(raw_q, str):  # a bare word in the map, or a name: OK, Good
                got = table.get(raw_q) if plan.quality_map is not None else _QUALITY_NAMES.get(raw_q.lower())
            if got is None:
                raise Refused("quality", f"quality {key} is not in the tag's quality_map")
            quality = got
        if retained and plan.timestamp is None:  # the broker's last stored value, of unknown age
            quality = max(quality, Quality.UNCERTAIN)
        if raw is None or quality == Quality.BAD:
            return Row(plan.index, ts, math.nan, int(Quality.BAD))
        if plan.text:
            return Row(plan.index, ts, math.nan, int(quality), _text_of(raw))
        value = _number_of(raw)
        tag = plan.tag
        if tag.scale != 1.0 or tag.offset != 0.0:
            value = value * tag.scale + tag.offset
        if not math.isfinite(value):
            raise Refused("value", f"value {raw!r} scales to {value}")
        return Row(plan.index, ts, value, int(quality))


def _number_of(raw: Any) -> float:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, int | Decimal):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            d = Decimal(raw.strip())
        except InvalidOperation:
            raise Refused("value", f"{raw[:40]!r} is not a number") from None
        value = float(d)
    else:
        raise Refused(
            "value", f"a value is a number, boolean, numeric string or null, not {type(raw).__name__}"
        )
    if not math.isfinite(value):
        raise Refused("value", f"value {raw!r} is not a finite number")
    return value


def _text_of(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | Decimal):
        return str(raw)
    raise Refused("value", f"a text value is a string, number or boolean, not {type(raw).__name__}")
