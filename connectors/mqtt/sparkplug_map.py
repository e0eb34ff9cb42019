"""Sparkplug B messages to sample rows through the host-side decoder of ``uns.sparkplug`` (births give the
aliases, data before a birth asks for a rebirth and is dropped, a death makes the dead signals Bad).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connectors.mqtt.config import SPARKPLUG_NAMESPACE, MqttTag
from connectors.mqtt.json_map import Row
from connectors.mqtt.paths import Refused
from shopfloor.model import Quality, SeriesKey, now_ns
from uns.sparkplug import HostDecoder, NoticeKind, SparkplugError, SparkplugMessage

Address = tuple[str, str, str | None, str]  # group, edge node, device (None: the node's own), metric


@dataclass(slots=True)
class SparkplugResult:
    """What one message gave: rows, messages to publish (rebirth requests), refusals, log-worthy changes."""

    rows: list[Row] = field(default_factory=list)
    publish: list[SparkplugMessage] = field(default_factory=list)
    refused: list[tuple[MqttTag | None, Refused]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


class SparkplugMapper:
    """The Sparkplug tags of one source and the decoder's view of their edge nodes. Feed every message
    whose topic ``handles`` says is theirs, in arrival order; ``connection_lost`` when the broker is."""

    def __init__(
        self,
        tags: Sequence[tuple[int, MqttTag]],
        text_tags: frozenset[int] = frozenset(),
        *,
        rebirth_retry_ns: int = 10_000_000_000,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.tags = {index: tag for index, tag in tags}
        self.text_tags = text_tags
        self._by_address: dict[Address, SeriesKey] = {}
        self._index: dict[SeriesKey, int] = {}
        self._nodes: dict[tuple[str, str], list[int]] = {}
        self._devices: dict[tuple[str, str, str], list[int]] = {}
        for index, tag in tags:
            a = tag.sparkplug
            assert a is not None
            key = SeriesKey(tag.asset, tag.signal)
            self._by_address[(a.group, a.edge_node, a.device, a.metric)] = key
            self._index[key] = index
            self._nodes.setdefault((a.group, a.edge_node), []).append(index)
            if a.device is not None:
                self._devices.setdefault((a.group, a.edge_node, a.device), []).append(index)
        self.decoder = HostDecoder(resolve=self._resolve, rebirth_retry_ns=rebirth_retry_ns, clock=clock)
        self._last_ts: dict[int, int] = {}
        self._bad: set[int] = set()  # tags whose last row is the Bad of a death or a lost connection
        self.rebirths_requested = 0

    def _resolve(self, group: str, edge: str, device: str | None, metric: str) -> SeriesKey | None:
        return self._by_address.get((group, edge, device, metric))

    def filters(self) -> list[str]:
        """Node and device topics of every configured edge node (NCMD/DCMD arrive too; ignored)."""
        out = []
        for group, edge in self._nodes:
            out += [f"{SPARKPLUG_NAMESPACE}/{group}/+/{edge}", f"{SPARKPLUG_NAMESPACE}/{group}/+/{edge}/+"]
        return out

    def handles(self, topic: str) -> bool:
        parts = topic.split("/")
        return (
            len(parts) in (4, 5) and parts[0] == SPARKPLUG_NAMESPACE and (parts[1], parts[3]) in self._nodes
        )

    def feed(self, topic: str, payload: bytes, received_ns: int) -> SparkplugResult:
        out = SparkplugResult()
        try:
            got = self.decoder.feed(topic, payload)
        except SparkplugError as exc:
            out.refused.append((None, Refused(exc.reason, exc.detail)))
            return out
        out.publish = list(got.publish)
        self.rebirths_requested += len(got.publish)
        for q in got.quarantined:  # data before its birth, or of a dead node: dropped, a rebirth asked for
            out.refused.append((None, Refused(q.reason, q.detail)))
        batch = got.samples
        if len(batch):
            text = batch.text
            for i in range(len(batch)):
                index = self._index[batch.keys[int(batch.series[i])]]
                t = None if text is None else text[i]
                out.rows.extend(self._row(index, int(batch.ts[i]), float(batch.value[i]),
                                          int(batch.quality[i]), t, out))  # fmt: skip
        for n in got.notices:
            where = f"{n.group_id}/{n.edge_node_id}" + (f"/{n.device_id}" if n.device_id else "")
            if n.kind is NoticeKind.NODE_DEAD:
                out.rows += self._dead(self._nodes.get((n.group_id, n.edge_node_id), []), received_ns)
            elif n.kind is NoticeKind.DEVICE_DEAD and n.device_id is not None:
                key = (n.group_id, n.edge_node_id, n.device_id)
                out.rows += self._dead(self._devices.get(key, []), received_ns)
            out.changes.append(f"sparkplug {where}: {n.kind}{f' ({n.detail})' if n.detail else ''}")
        return out

    def _row(self, index: int, ts: int, value: float, quality: int, text: str | None,
             out: SparkplugResult) -> list[Row]:  # fmt: skip
        tag = self.tags[index]
        if (text is not None) != (index in self.text_tags) and not (text is None and math.isnan(value)):
            kind = "a text" if text is not None else "a numeric"
            out.refused.append((tag, Refused("type-mismatch", f"{kind} metric for signal {tag.signal}")))
            return []
        if quality == Quality.BAD:
            value, text = math.nan, None
        elif text is None and (tag.scale != 1.0 or tag.offset != 0.0):
            value = value * tag.scale + tag.offset
        self._note(index, ts)
        return [Row(index, ts, value, quality, text)]

    def _note(self, index: int, ts: int) -> None:
        self._bad.discard(index)
        if ts > self._last_ts.get(index, -1):
            self._last_ts[index] = ts

    def _dead(self, indices: Sequence[int], at_ns: int) -> list[Row]:
        """A Bad row (no value) per signal not yet Bad, after its newest sample (never overwriting it)."""
        rows = []
        for index in indices:
            if index in self._bad:
                continue
            ts = max(at_ns, self._last_ts.get(index, -1) + 1)
            self._last_ts[index] = ts
            self._bad.add(index)
            rows.append(Row(index, ts, math.nan, int(Quality.BAD)))
        return rows

    def connection_lost(self, at_ns: int) -> list[Row]:
        """Every Sparkplug signal Bad: whether its edge node lived on is unknown until the next birth or data."""
        return self._dead(list(self.tags), at_ns)

    def online_nodes(self) -> dict[str, bool]:
        return {f"{s.group_id}/{s.edge_node_id}": s.online for s in self.decoder.nodes()}
