"""The ISA-95 topic tree of the unified namespace: ``[prefix/]site/area/line/asset/signal`` and the reserved
``$events`` level, built from asset paths and signal names and parsed back, reversibly.

Asset segments and signal names hold only letters, digits, ``_``, ``.`` and ``-`` (``shopfloor.model``), so
no name can hold an MQTT wildcard (``+``, ``#``), a level separator (``/``) or ``$``: the mapping is a plain
join, nothing is escaped, and a name outside that grammar is refused (``TopicError``), never rewritten.
The last level is the signal, everything before it (after the prefix) the asset path; ``$events``
cannot be a signal name (a signal starts with a letter or ``_``), so an asset's events never collide
with one of its signals.
"""

from __future__ import annotations

from typing import NamedTuple

from shopfloor.model import ASSET_PATH_RE, SIGNAL_NAME_RE, AssetPath, SeriesKey

EVENTS_LEVEL = "$events"
"""The last topic level of an asset's events: ``<asset>/$events``."""

_MAX_TOPIC_BYTES = 65535  # MQTT: a topic name is a UTF-8 string of at most 65535 bytes


class TopicError(ValueError):
    """A name that has no topic (outside the asset/signal grammar), or a topic outside the tree."""


class MqttMessage(NamedTuple):
    """One message to publish: the topic and its payload bytes."""

    topic: str
    payload: bytes


class ParsedTopic(NamedTuple):
    """What a topic of the tree addresses: an asset and one of its signals, or (signal None) its events."""

    asset: AssetPath
    signal: str | None

    @property
    def is_events(self) -> bool:
        return self.signal is None


def check_prefix(prefix: str) -> str:
    """The prefix as used in topics (a trailing ``/`` dropped); TopicError unless it is a valid one.

    A prefix is zero or more topic levels ahead of the site: none empty, no ``+``, ``#`` or NUL, and
    not starting with ``$`` (brokers reserve those topics, e.g. ``$SYS``, ``$share``).
    """
    p = prefix[:-1] if prefix.endswith("/") else prefix
    if not p:
        return ""
    problem = ""
    if p.startswith("$"):
        problem = "it may not start with '$' (brokers reserve those topics)"
    elif any(c in p for c in "+#\x00"):
        problem = "it may not hold '+', '#' or NUL"
    elif "" in p.split("/"):
        problem = "it may not have an empty level ('//' or a leading '/')"
    if problem:
        raise TopicError(f"invalid topic prefix {prefix!r}: {problem}")
    return p


class TopicTree:
    """Builds and parses the topics of one prefix. Built topics are cached per series."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = check_prefix(prefix)
        self._head = self.prefix + "/" if self.prefix else ""
        self._cache: dict[tuple[str, str], str] = {}

    def sample_topic(self, asset: str, signal: str) -> str:
        """``[prefix/]<asset>/<signal>``; TopicError if the asset path or the signal name is invalid."""
        key = (asset, signal)
        topic = self._cache.get(key)
        if topic is None:
            if not isinstance(asset, str) or not ASSET_PATH_RE.match(asset):
                raise TopicError(f"asset path {asset!r} has no topic: expected 'site/area/line/asset'")
            if not isinstance(signal, str) or not SIGNAL_NAME_RE.match(signal):
                raise TopicError(f"signal name {signal!r} of {asset} has no topic")
            topic = self._head + asset + "/" + signal
            if len(topic.encode()) > _MAX_TOPIC_BYTES:
                raise TopicError(f"topic of {asset}/{signal} is longer than MQTT allows")
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = topic
        return topic

    def series_topic(self, key: SeriesKey) -> str:
        return self.sample_topic(key.asset, key.signal)

    def events_topic(self, asset: str) -> str:
        """``[prefix/]<asset>/$events``; TopicError if the asset path is invalid."""
        if not isinstance(asset, str) or not ASSET_PATH_RE.match(asset):
            raise TopicError(f"asset path {asset!r} has no topic: expected 'site/area/line/asset'")
        return self._head + asset + "/" + EVENTS_LEVEL

    def parse(self, topic: str) -> ParsedTopic:
        """The asset and signal (or events) a topic of this tree addresses; TopicError otherwise."""
        if self._head:
            if not topic.startswith(self._head):
                raise TopicError(f"topic {topic!r} is not under the prefix {self.prefix!r}")
            rest = topic[len(self._head) :]
        else:
            rest = topic
        asset, sep, last = rest.rpartition("/")
        if not sep or not ASSET_PATH_RE.match(asset):
            raise TopicError(
                f"topic {topic!r} does not name an asset path (site/area/line/asset) and a signal"
            )
        if last == EVENTS_LEVEL:
            return ParsedTopic(AssetPath(asset), None)
        if not SIGNAL_NAME_RE.match(last):
            raise TopicError(
                f"topic {topic!r} ends in {last!r}, which is neither a signal name nor {EVENTS_LEVEL}"
            )
        return ParsedTopic(AssetPath(asset), last)

    def subscription(self, site: str | None = None) -> str:
        """The filter that matches every topic of this tree (of one site, if given)."""
        if site is not None and (not site or any(c in site for c in "/+#")):
            raise TopicError(f"invalid site {site!r}")
        return self._head + (f"{site}/#" if site else "#")
