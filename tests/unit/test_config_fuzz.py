"""Mutation fuzz of the default plant config, as `config validate` and `acquire` load it (connector
settings and tags included): every mutation is refused with a located error, none ends in a traceback.

Mutations: wrong types and values anywhere, unknown keys, out-of-range ports and bad endpoints,
broken disabled sources, binary garbage and NUL bytes in the text, and files that are not UTF-8.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopfloor.config import ConfigError, load_plant_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "examples" / "qijiang-plant.yaml"
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: the file is large
BAD_VALUES: list[Any] = [None, -1, "", "not/valid path", [], {"x": 1}, 1e308, True, "1 XB", 70000, "\x07"]


def walk_to_random_container(d: Any, rng: random.Random) -> Any:
    target = d
    for _ in range(rng.randint(0, 5)):
        children = [
            v
            for v in (target.values() if isinstance(target, dict) else target)
            if isinstance(v, dict | list) and v
        ]
        if not children:
            break
        target = rng.choice(children)
    return target


def structural(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    roll = rng.random()
    sources = d["sources"]
    if roll < 0.15:  # an out-of-range or malformed port/endpoint in some source, enabled or not
        src = rng.choice(sources)
        if src["connector"] == "opcua":
            src["settings"]["endpoint"] = rng.choice(
                [
                    "opc.tcp://127.0.0.1:70000/x",
                    "opc.tcp://127.0.0.1:0/x",
                    "opc.tcp://:4840",
                    "http://h:4840",
                    "opc.tcp://h:-1",
                ]
            )
        else:
            src["settings"]["port"] = rng.choice([0, 65536, 70000, -5, "502x"])
    elif roll < 0.30:  # a disabled source with a misspelt or wrong key
        src = rng.choice(sources)
        src["enabled"] = False
        if rng.random() < 0.5:
            src["settings"][rng.choice(["word_ordr", "hots", "timeout"])] = 1
        elif src["tags"]:
            tag = rng.choice(src["tags"])
            tag[rng.choice(list(tag))] = rng.choice(BAD_VALUES)
    else:  # anywhere: a bad value or an unknown key
        target = walk_to_random_container(d, rng)
        if isinstance(target, list):
            target.append(rng.choice(BAD_VALUES))
        elif rng.random() < 0.3 or not target:
            target[rng.choice(["colour", "sigals", "max_byte", "urll"])] = 1
        else:
            target[rng.choice(list(target))] = rng.choice(BAD_VALUES)
    return d


def textual(text: str, rng: random.Random) -> bytes:
    raw = bytearray(text.encode("utf-8"))
    pos = rng.randrange(len(raw))
    roll = rng.random()
    if roll < 0.3:
        raw[pos:pos] = b"\x00"
    elif roll < 0.6:
        raw[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))  # binary garbage
    elif roll < 0.8:
        raw[pos:pos] = b"\xff\xfe"  # not UTF-8
    else:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))  # all garbage
    return bytes(raw)


def located(exc: ConfigError) -> bool:
    return bool(exc.issues) and all(i.line is not None for i in exc.issues)


def test_every_mutation_of_the_default_config_is_a_located_error(tmp_path: Path) -> None:
    base = yaml.safe_load(DEFAULT.read_text())
    text = DEFAULT.read_text()
    rng = random.Random(20261201)
    load_plant_config(DEFAULT, check_sources=True)  # the base itself is valid, sources included
    counts = {"structural": 0, "textual": 0, "accepted": 0}
    for i in range(100):
        path = tmp_path / f"m{i}.yaml"
        if i % 4 == 3:
            path.write_bytes(textual(text, rng))
            kind = "textual"
        else:
            mutated = json.loads(json.dumps(structural(base, rng)))
            path.write_text(yaml.dump(mutated, Dumper=DUMPER, sort_keys=False, allow_unicode=True))
            kind = "structural"
        try:
            load_plant_config(path, check_sources=True)
        except ConfigError as exc:
            assert located(exc), f"{path}: unlocated error: {exc}"
            assert all("\n" not in str(issue) for issue in exc.issues), str(exc)
            counts[kind] += 1
            continue
        counts["accepted"] += 1  # a mutation may be harmless (garbage inside a comment or string)
    print(f"\n[fuzz] {counts}")
    assert counts["structural"] > 60 and counts["textual"] > 15


@pytest.mark.parametrize(
    "content",
    [b"site: q\x00\n", bytes(range(256)) * 4, b"\xff\xfe\x00s\x00i\x00t\x00e\x00", b"site: [unclosed\n"],
    ids=["nul", "binary", "utf16", "syntax"],
)
@pytest.mark.parametrize("command", ["config validate", "acquire --config"])
def test_the_command_line_gives_one_located_line_and_exit_2(
    tmp_path: Path, content: bytes, command: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "shopfloor.app.cli", *command.split(), str(path)],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"{path}:"), out.stderr


def _with(doc: dict[str, Any], connector: str, **settings: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    (src,) = [s for s in d["sources"] if s["connector"] == connector]
    src["settings"].update(settings)
    return d


@pytest.mark.parametrize(
    ("connector", "settings", "where"),
    [
        ("opcua", {"endpoint": "opc.tcp://127.0.0.1:70000/shopfloor/simulator"}, "settings.endpoint"),
        ("opcua", {"endpoint": "opc.tcp://127.0.0.1:0/x"}, "settings.endpoint"),
        ("opcua", {"endpoint": "opc.tcp://:4840/x"}, "settings.endpoint"),
        ("opcua", {"endpoint": "opc.tcp://127.0.0.1:48x0/x"}, "settings.endpoint"),
        ("modbus", {"port": 65536}, "settings.port"),
        ("modbus", {"word_ordr": "big"}, "settings.word_ordr"),  # in the disabled Modbus source
    ],
    ids=["port-70000", "port-0", "no-host", "port-not-a-number", "modbus-65536", "disabled-misspelt"],
)
def test_each_bad_source_setting_is_refused_where_it_is(
    tmp_path: Path, connector: str, settings: dict[str, Any], where: str
) -> None:
    doc = _with(yaml.safe_load(DEFAULT.read_text()), connector, **settings)
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.dump(doc, Dumper=DUMPER, sort_keys=False, allow_unicode=True))
    with pytest.raises(ConfigError) as info:
        load_plant_config(path, check_sources=True)
    assert any(i.key.endswith(where) and i.line is not None for i in info.value.issues), str(info.value)
