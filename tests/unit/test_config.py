"""Plant config: typed loading, and errors that name file, line and key for every mistake."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from shopfloor.config import ConfigError, json_schema, load_plant_config, parse_plant_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    cfg = load_plant_config(path)
    assert cfg.site == "qijiang"
    assert cfg.assets


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_plant_config(text, "plant.yaml")
    return [str(i) for i in info.value.issues]


def test_wrong_type_names_file_line_and_key() -> None:
    msgs = errors("site: q\nassets:\n  - path: q/a/l/m\n    signals:\n      - name: t\n        unit: [1]\n")
    assert len(msgs) == 1
    assert msgs[0].startswith("plant.yaml:6:9: assets[0].signals[0].unit:")


def test_unknown_key_suggests_the_right_one() -> None:
    (msg,) = errors("site: q\nhistorian:\n  spool:\n    max_byte: 1GiB\n")
    assert msg.startswith("plant.yaml:4:5: historian.spool.max_byte:")
    assert "did you mean 'max_bytes'" in msg


def test_all_problems_are_reported_at_once() -> None:
    msgs = errors(
        "site: q\nassets:\n  - path: q/a/l/m\n    signals: [{name: x}, {name: x}]\n  - path: not a path\n"
        "historian:\n  url: ftp://x\n  batch: {max_points: 0}\n  password: hunter2\n"
    )
    joined = "\n".join(msgs)
    assert "historian.password: secrets may not be written" in joined
    assert "assets[1].path" in joined
    assert "historian.url" in joined and "historian.batch.max_points" in joined
    assert "hunter2" not in joined


def test_duplicates_are_located() -> None:
    msgs = errors(
        "site: q\nassets:\n  - path: q/a/l/m\n    signals: [{name: x}, {name: x}]\n  - path: q/a/l/m\n"
    )
    assert any(m.startswith("plant.yaml:4:") and "duplicate signal 'x'" in m for m in msgs)
    assert any(m.startswith("plant.yaml:5:") and "duplicate asset path" in m for m in msgs)


def test_duplicate_yaml_keys_are_errors_not_silently_overwritten() -> None:
    (msg,) = errors("site: q\nname: a\nname: b\n")
    assert msg.startswith("plant.yaml:3:1: name: duplicate key 'name' (first at line 2)")


def test_yaml_syntax_error_has_line() -> None:
    (msg,) = errors("site: q\nassets: [\n")
    assert msg.startswith("plant.yaml:3:") and "YAML syntax error" in msg


def test_credentials_in_url_are_refused() -> None:
    (msg,) = errors("site: q\nhistorian:\n  url: influxdb-v1+http://admin:secret@127.0.0.1:8086/db\n")
    assert "historian.url" in msg and "credentials may not be written" in msg
    assert "secret@" not in msg


def test_json_schema_is_valid_json_with_the_top_level_keys() -> None:
    schema = json.loads(json_schema())
    assert {"site", "assets", "sources", "historian"} <= set(schema["properties"])


def _mutations(doc: dict, rng: random.Random, n: int) -> list[dict]:
    """Small random corruptions of a valid config: wrong types, unknown keys, bad values."""
    bad_values = [None, -1, "", "not/valid path", [], {"x": 1}, 1e308, True, "1 XB"]
    out = []
    for _ in range(n):
        d = json.loads(json.dumps(doc))
        target = d
        # walk to a random mapping
        for _ in range(rng.randint(0, 3)):
            children = [
                v
                for v in (target.values() if isinstance(target, dict) else target)
                if isinstance(v, (dict, list)) and v
            ]
            if not children:
                break
            target = rng.choice(children)
        if isinstance(target, list):
            target.append(rng.choice(bad_values))
        elif rng.random() < 0.3 or not target:
            target[rng.choice(["colour", "sigals", "max_byte", "urll"])] = 1
        else:
            target[rng.choice(list(target))] = rng.choice(bad_values)
        out.append(d)
    return out


def test_mutation_fuzz_every_error_is_located_and_nothing_crashes() -> None:
    base = yaml.safe_load((ROOT / "examples" / "minimal-plant.yaml").read_text())
    rng = random.Random(1234)
    located = total = 0
    for mutated in _mutations(base, rng, 300):
        text = yaml.safe_dump(mutated, sort_keys=False)
        try:
            parse_plant_config(text, "fuzz.yaml")
        except ConfigError as exc:
            for issue in exc.issues:
                total += 1
                located += issue.line is not None and bool(issue.loc)
    assert total > 100
    assert located == total


def test_shipped_schema_file_is_current() -> None:
    shipped = (ROOT / "docs" / "plant-config.schema.json").read_text()
    assert shipped.strip() == json_schema().strip(), "regenerate with: make schema"


def test_a_retry_cap_below_its_first_delay_is_located() -> None:
    (msg,) = errors("site: q\nhistorian:\n  retry: {initial_ms: 5000, max_ms: 100}\n")
    assert msg.startswith("plant.yaml:3:") and "max_ms (100) must be at least initial_ms (5000)" in msg
