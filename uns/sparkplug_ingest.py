"""The ingest's Sparkplug B side: a HostDecoder fed every spBv1.0 message, its edge nodes' births kept on disk so
a restarted ingest decodes the DDATA the broker sends again, and each node's state as counters and a status.

Births are written (atomically, fsynced) by ``flush`` before the batch holding them is acknowledged, so whatever
the broker redelivers after a crash is read with the alias table it was published under.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from shopfloor.files import write_atomic
from shopfloor.model import now_ns
from uns.json_payload import Decoded, PayloadError
from uns.sparkplug import (
    NAMESPACE,
    HostDecoder,
    MessageType,
    NoticeKind,
    SparkplugError,
    SparkplugMessage,
    Topic,
    host_state,
)

log = logging.getLogger("shopfloor.uns.ingest")

BIRTHS_FILE = "sparkplug-births.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "_"


class SparkplugHost:
    """Decodes Sparkplug B for the ingest: ``feed`` gives a message's samples (or a PayloadError with a
    reason to quarantine it by) and the rebirth requests to publish; ``flush`` saves new births."""

    def __init__(
        self, groups: Sequence[str], host_id: str, state_dir: Path, *, clock: Callable[[], int] = now_ns
    ) -> None:
        self.groups = list(groups)
        self.host_id = host_id
        self.path = Path(state_dir) / BIRTHS_FILE
        self.decoder = HostDecoder(clock=clock)
        self._births: dict[str, dict[str, str]] = {}  # "group/edge" -> {"": NBIRTH, device: DBIRTH} (base64)
        self._dirty = False
        self.notices: dict[str, int] = {}
        self._restore()

    # -- subscriptions and the host's own state
    def subscriptions(self) -> list[str]:
        """``spBv1.0/<group>/#`` per group; never a shared subscription: a Sparkplug host must see every
        message of an edge node (its births above all) to read the rest."""
        return [f"{NAMESPACE}/{g}/#" for g in self.groups]

    def state(self, online: bool, timestamp_ms: int) -> SparkplugMessage:
        """The STATE birth (online) or will (offline) of this host; the two carry the same timestamp."""
        return host_state(self.host_id, online, timestamp_ms)

    # -- messages
    def feed(
        self, topic: str, payload: bytes
    ) -> tuple[Decoded | None, PayloadError | None, list[SparkplugMessage]]:
        """(decoded samples, None, replies) or (None, error, replies) for a message to quarantine."""
        try:
            res = self.decoder.feed(topic, payload)
        except SparkplugError as exc:
            return None, PayloadError(f"sparkplug.{exc.reason}", exc.detail), []
        for n in res.notices:
            self.notices[n.kind.value] = self.notices.get(n.kind.value, 0) + 1
            who = f"{n.group_id}/{n.edge_node_id}" + (f"/{n.device_id}" if n.device_id else "")
            if n.kind in (NoticeKind.NODE_DEAD, NoticeKind.SEQ_GAP, NoticeKind.REBIRTH_REQUESTED):
                log.warning("sparkplug %s: %s %s", who, n.kind.value, n.detail)
            elif n.kind is not NoticeKind.DEVICE_BORN:
                log.info("sparkplug %s: %s %s", who, n.kind.value, n.detail)
        t = Topic.parse(topic)  # feed checked it
        if t.message_type in (MessageType.NBIRTH, MessageType.DBIRTH) and not res.quarantined:
            node = self._births.setdefault(f"{t.group_id}/{t.edge_node_id}", {})
            if t.message_type is MessageType.NBIRTH:
                node.clear()
            node[t.device_id or ""] = base64.b64encode(bytes(payload)).decode()
            self._dirty = True
        if res.quarantined and not len(res.samples):
            q = res.quarantined[0]
            return None, PayloadError(f"sparkplug.{q.reason}", q.detail), res.publish
        return Decoded(res.samples, [], []), None, res.publish

    def flush(self) -> None:
        """Save the births seen since the last flush (before their batch is acknowledged)."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"v": 1, "nodes": self._births}))
        self._dirty = False

    def _restore(self) -> None:
        if not self.path.exists():
            return
        try:
            nodes = json.loads(self.path.read_text(encoding="utf-8"))["nodes"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "sparkplug: cannot read %s (%s); edge nodes are asked for a rebirth instead", self.path, exc
            )
            return
        restored = 0
        for key, births in nodes.items():
            group, _, edge = key.partition("/")
            try:
                node = births[""]
                self.decoder.feed(f"{NAMESPACE}/{group}/{MessageType.NBIRTH}/{edge}", base64.b64decode(node))
                for device, dbirth in births.items():
                    if device:
                        topic = f"{NAMESPACE}/{group}/{MessageType.DBIRTH}/{edge}/{device}"
                        self.decoder.feed(topic, base64.b64decode(dbirth))
            except (KeyError, ValueError, SparkplugError) as exc:
                log.error("sparkplug: the saved births of %s are unreadable (%s); skipped", key, exc)
                continue
            self._births[key] = dict(births)
            restored += 1
        if restored:
            log.info("sparkplug: restored the births of %d edge nodes from %s", restored, self.path)

    # -- reporting
    def status(self, now: int) -> str:
        out = []
        for n in self.decoder.nodes():
            age = "-" if n.last_message_ns is None else f"{(now - n.last_message_ns) / 1e9:.1f}s"
            out.append(f"{n.group_id}/{n.edge_node_id}:{'online' if n.online else 'offline'}:{age}")
        return ",".join(sorted(out)) or "-"

    def health_values(self, now: int) -> dict[str, float]:
        """``sparkplug.<group>.<edge>.online|age_s|births|deaths|seq_gaps|devices`` and the notice counts."""
        values: dict[str, float] = {f"sparkplug.{k}": v for k, v in self.notices.items()}
        for n in self.decoder.nodes():
            base = f"sparkplug.{_safe(n.group_id)}.{_safe(n.edge_node_id)}"
            values[f"{base}.online"] = float(n.online)
            values[f"{base}.births"] = n.births
            values[f"{base}.deaths"] = n.deaths
            values[f"{base}.seq_gaps"] = n.seq_gaps
            values[f"{base}.devices"] = len(n.devices_online)
            if n.last_message_ns is not None:
                values[f"{base}.age_s"] = (now - n.last_message_ns) / 1e9
        return values
