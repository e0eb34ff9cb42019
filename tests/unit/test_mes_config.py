"""The ``mes:`` section of the plant config: every mistake is one located line, and the shipped example
maps every asset of the demo plant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shopfloor.config import ConfigError, load_plant_config
from shopfloor.config.load import parse_plant_config

ROOT = Path(__file__).resolve().parents[2]
HEAD = """site: acme
assets:
- {path: acme/a/l/press, signals: [{name: state}, {name: n}, {name: kg}]}
- {path: acme/b/l/press, signals: [{name: state}, {name: n}]}
mes:
"""


def refused(body: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_plant_config(HEAD + body, file="plant.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  assets: [{path: acme/a/l/press, reason: why}]\n", "has no signal 'why'"),
        ("  assets: [{path: acme/x/l/press}]\n", "unknown asset acme/x/l/press"),
        ("  password: hunter2\n", "password"),
        ("  database: 'postgresql+psycopg://u:hunter2@db/mes'\n", "not in the database URL"),
        ("  database: 'mysql://db/mes'\n", "expected sqlite"),
        ("  reasons: [{id: a, en: A, zh: 甲}]\n", "has no loss class"),
        (
            "  reasons: [{id: a, en: A, zh: 甲, loss: setup, codes: [1]}, {id: b, en: B, zh: 乙, loss: setup, codes: [1]}]\n",
            "code 1",
        ),
        ("  reasons: [{id: a, en: A, zh: 甲, parent: zz}]\n", "parent 'zz'"),
        ("  shifts: [{name: A, start: '25:00', end: '08:00'}]\n", "HH:MM"),
        (
            "  lots: [{asset: acme/a/l/press, kind: part, counter: n}, {asset: acme/b/l/press, kind: part, counter: n}]\n",
            "clash",
        ),
        (
            "  lots: [{asset: acme/a/l/press, kind: part, counter: n}, {asset: acme/a/l/press, kind: x, counter: n, serial_prefix: X}]\n",
            "has a lot rule already",
        ),
        (
            "  lots: [{asset: acme/a/l/press, kind: part, counter: n, consume: quantity}]\n",
            "needs a quantity counter",
        ),
        (
            "  lots: [{asset: acme/a/l/press, kind: part, counter: n, inputs: [acme/b/l/press]}]\n",
            "has no lot rule",
        ),
        ("  assets: [{path: acme/a/l/press, ideal_cycle_s: 3, ideal_rate_per_h: 1200}]\n", "not both"),
    ],
)
def test_mistakes_are_located_and_explained(body: str, message: str) -> None:
    text = refused(body)
    assert message in text
    assert text.startswith("plant.yaml:")  # file:line:column first
    assert "hunter2" not in text  # a secret never echoes back


def test_the_demo_plant_maps_every_asset_and_every_plc_reason() -> None:
    cfg = load_plant_config(ROOT / "examples/qijiang-plant.yaml")
    assert {a.path for a in cfg.mes.assets} == {a.path for a in cfg.assets}
    codes = {c for r in cfg.mes.reasons for c in r.codes}
    from plant_simulator.codes import Reason

    assert codes == {int(r) for r in Reason if r is not Reason.NONE}
    assert len(cfg.mes.shifts) == 3
