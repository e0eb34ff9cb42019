"""The unified namespace's topic tree: asset paths and signal names map to topics and back, with or
without a prefix; names outside the grammar and topics outside the tree are refused, never rewritten."""

from __future__ import annotations

import random

import pytest

from shopfloor.model import system_asset
from uns.topics import EVENTS_LEVEL, TopicError, TopicTree, check_prefix

MILL = "qijiang/copper/hot-rolling/mill-1"


@pytest.mark.parametrize("prefix", ["", "uns", "uns/v1", "uns/v1/"])
def test_a_signal_and_the_events_of_an_asset_round_trip(prefix: str) -> None:
    tree = TopicTree(prefix)
    head = prefix.rstrip("/") + "/" if prefix else ""
    topic = tree.sample_topic(MILL, "roll_force")
    assert topic == f"{head}{MILL}/roll_force"
    assert tree.parse(topic) == (MILL, "roll_force")
    events = tree.events_topic(MILL)
    assert events == f"{head}{MILL}/{EVENTS_LEVEL}"
    parsed = tree.parse(events)
    assert parsed.asset == MILL and parsed.signal is None and parsed.is_events


def test_random_valid_names_round_trip_at_every_depth() -> None:
    rnd = random.Random(7)
    first = "abcXYZ019"
    rest = "abcXYZ019_.-"
    tree = TopicTree("plant/uns")
    for _ in range(500):
        depth = rnd.randint(2, 8)
        segments = [rnd.choice(first) + "".join(rnd.choice(rest) for _ in range(rnd.randint(0, 6)))]
        segments += [
            rnd.choice(rest[:-2]) + "".join(rnd.choice(rest) for _ in range(rnd.randint(0, 6)))
            for _ in range(depth - 1)
        ]
        asset = "/".join(segments)
        signal = rnd.choice("abc_") + "".join(rnd.choice(rest) for _ in range(rnd.randint(0, 8)))
        assert tree.parse(tree.sample_topic(asset, signal)) == (asset, signal)
        assert tree.parse(tree.events_topic(asset)) == (asset, None)


def test_a_signal_named_like_an_events_level_cannot_exist_so_events_never_collide() -> None:
    tree = TopicTree()
    with pytest.raises(TopicError):
        tree.sample_topic(MILL, EVENTS_LEVEL)
    # a signal called _events is a signal, not the events of the asset
    assert tree.parse(tree.sample_topic(MILL, "_events")) == (MILL, "_events")


def test_the_system_assets_of_shopfloor_itself_have_topics() -> None:
    tree = TopicTree()
    asset = system_asset("qijiang", "shopfloor", "mqtt-publisher")
    assert tree.sample_topic(asset, "written") == "qijiang/_system/shopfloor/mqtt-publisher/written"


@pytest.mark.parametrize(
    "asset, signal",
    [
        (MILL, "roll+force"),  # a wildcard
        (MILL, "roll#"),
        (MILL, "roll/force"),  # a level separator
        (MILL, "1st"),  # signals start with a letter or _
        (MILL, ""),
        ("qijiang/copper/+/mill-1", "roll_force"),
        ("qijiang/copper/#", "roll_force"),
        ("qijiang", "roll_force"),  # one segment is no asset path
        ("qijiang//mill-1", "roll_force"),
        ("/qijiang/copper", "roll_force"),
        ("qijiang/copper/hot rolling/mill-1", "roll_force"),
        ("$SYS/broker/x/y", "roll_force"),
        ("qijiang/copper/热轧/mill-1", "roll_force"),
    ],
)
def test_names_outside_the_grammar_are_refused_not_escaped(asset: str, signal: str) -> None:
    with pytest.raises(TopicError):
        TopicTree("uns").sample_topic(asset, signal)


def test_events_of_an_invalid_asset_are_refused() -> None:
    with pytest.raises(TopicError):
        TopicTree().events_topic("qijiang/#")


@pytest.mark.parametrize(
    "topic",
    [
        "other/qijiang/copper/hot-rolling/mill-1/roll_force",  # not under the prefix
        "uns/qijiang/roll_force",  # the asset path has one segment
        "uns/qijiang/copper/hot-rolling/mill-1/9lives",  # not a signal name
        "uns/qijiang/copper/hot-rolling/mill-1/$other",
        "uns/qijiang//mill-1/roll_force",
        "uns/qijiang/copper/hot-rolling/mill-1/",
        "uns",
        "unsqijiang/copper/hot-rolling/mill-1/roll_force",
    ],
)
def test_topics_outside_the_tree_do_not_parse(topic: str) -> None:
    with pytest.raises(TopicError):
        TopicTree("uns").parse(topic)


@pytest.mark.parametrize("prefix", ["$uns", "uns/+", "uns/#", "uns//v1", "/uns", "a\x00b"])
def test_invalid_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(TopicError):
        check_prefix(prefix)


def test_the_subscription_filter_covers_the_tree() -> None:
    assert TopicTree("uns").subscription() == "uns/#"
    assert TopicTree("uns").subscription("qijiang") == "uns/qijiang/#"
    assert TopicTree().subscription("qijiang") == "qijiang/#"
    with pytest.raises(TopicError):
        TopicTree().subscription("a/b")
