"""The publisher's Sparkplug B codec (``publish.format: sparkplug``): an EdgeNode behind the PayloadCodec interface,
with its bdSeq and aliases kept in a state file so a restarted edge goes on counting and keeps every alias.

Samples become NBIRTH/DBIRTH/DDATA (``uns.sparkplug``); events have no Sparkplug form and go out as the JSON
encoding's ``$events`` messages on the topic tree. Data is encoded at send time, inside the connection's
session (see ``MqttPublisher.send``), so its sequence numbers always follow that session's birth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from shopfloor.batch import SampleBatch
from shopfloor.files import write_atomic
from shopfloor.model import Event, SeriesKey
from uns.json_payload import JsonCodec
from uns.sparkplug import (
    NAMESPACE,
    DeviceSpec,
    EdgeConfig,
    EdgeNode,
    MessageType,
    SparkplugMessage,
)
from uns.topics import MqttMessage

log = logging.getLogger("shopfloor.uns")

STATE_FILE = "sparkplug-edge.json"
STATE_VERSION = 1


def _plain(messages: Iterable[SparkplugMessage]) -> list[MqttMessage]:
    return [MqttMessage(m.topic, m.payload) for m in messages]


class SparkplugCodec:
    """Sparkplug B for ``MqttPublisher``: ``will`` opens a session (next bdSeq), ``on_connect`` is the birth,
    ``encode_samples`` returns a deferred encoding the publisher calls once connected, ``on_command`` answers
    an NCMD rebirth. Births and data are published at the publisher's QoS (1: at least once)."""

    format = "sparkplug"

    def __init__(
        self,
        config: EdgeConfig,
        *,
        topic_prefix: str = "",
        devices: Sequence[DeviceSpec] = (),
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.devices = list(devices)
        self.events = JsonCodec(topic_prefix)
        self._state = None if state_dir is None else Path(state_dir) / STATE_FILE
        bd_seq, aliases = self._load()
        self.node = EdgeNode(config, bd_seq=bd_seq)
        self.node.restore(aliases)
        self._saved_aliases = len(aliases)

    # -- the state file: bdSeq and aliases survive a restart
    def _load(self) -> tuple[int, list[tuple[SeriesKey, int]]]:
        if self._state is None or not self._state.exists():
            return 0, []
        try:
            doc = json.loads(self._state.read_text(encoding="utf-8"))
            if (
                doc.get("v") != STATE_VERSION
                or doc.get("group_id") != self.config.group_id
                or doc.get("edge_node_id") != self.config.edge_node_id
            ):
                log.warning("sparkplug: %s is for another edge node or version; starting afresh", self._state)
                return 0, []
            aliases = [(SeriesKey(str(a), str(s)), int(n)) for a, s, n in doc["aliases"]]
            return int(doc["next_bd_seq"]) % 256, aliases
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # refusing to start would stop acquisition; a fresh state costs hosts a rebirth, never data
            log.error("sparkplug: cannot read %s (%s); bdSeq and aliases start afresh", self._state, exc)
            return 0, []

    def _save(self) -> None:
        if self._state is None:
            return
        aliases = self.node.aliases
        doc = {
            "v": STATE_VERSION,
            "group_id": self.config.group_id,
            "edge_node_id": self.config.edge_node_id,
            "next_bd_seq": self.node.next_bd_seq,
            "aliases": [[k.asset, k.signal, a] for k, a in sorted(aliases.items(), key=lambda kv: kv[1])],
        }
        self._state.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._state, json.dumps(doc))
        self._saved_aliases = len(aliases)

    def _save_if_new_aliases(self) -> None:
        if len(self.node.aliases) != self._saved_aliases:
            self._save()

    # -- PayloadCodec
    def will(self) -> MqttMessage:
        death = self.node.will()
        self._save()  # the next process must not reuse this session's bdSeq
        return MqttMessage(death.topic, death.payload)

    def on_connect(self) -> list[MqttMessage]:
        births = _plain(self.node.birth(self.devices))
        self._save_if_new_aliases()
        return births

    def encode_samples(self, batch: SampleBatch) -> Callable[[], list[MqttMessage]]:
        def encode() -> list[MqttMessage]:
            out = _plain(self.node.data(batch))  # EncodeError (nothing changed) for what it cannot carry
            self._save_if_new_aliases()
            return out

        return encode

    def encode_events(self, events: Sequence[Event], seqs: Sequence[int]) -> list[MqttMessage]:
        return self.events.encode_events(events, seqs)

    def command_topics(self) -> list[str]:
        """What to subscribe to before the birth: this node's NCMD (DCMDs are not taken: the edge is read-only)."""
        return [f"{NAMESPACE}/{self.config.group_id}/{MessageType.NCMD}/{self.config.edge_node_id}"]

    def on_command(self, topic: str, payload: bytes) -> list[MqttMessage]:
        """The messages answering a command: a whole rebirth for ``Node Control/Rebirth``, else none.
        Call it inside the session's send order (the rebirth restarts the sequence numbers)."""
        return _plain(self.node.on_command(topic, payload))

    def death(self) -> MqttMessage | None:
        """The NDEATH to publish before a clean disconnect (the broker drops the will then)."""
        if self.node.bd_seq is None or not self.node.born:
            return None
        d = self.node.death()
        return MqttMessage(d.topic, d.payload)
