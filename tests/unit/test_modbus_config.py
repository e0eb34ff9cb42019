"""Modbus connector config: the generated simulator source validates, bad tags are refused, docs match."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from connectors.modbus.config import ModbusSettings, ModbusTag
from connectors.modbus.connector import ModbusConnector
from shopfloor.connector import SourceContext

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "connectors" / "modbus"


def test_generated_simulator_source_validates() -> None:
    cfg = yaml.safe_load((ROOT / "examples" / "qijiang-plant.yaml").read_text())
    src = next(s for s in cfg["sources"] if s["connector"] == "modbus")
    settings = ModbusSettings.model_validate(src["settings"])
    tags = [ModbusTag.model_validate(t) for t in src["tags"]]
    assert settings.port == 5020 and len(tags) > 200
    c = ModbusConnector(SourceContext("sim", settings, tags))
    assert c.describe()["groups"]["default"]["requests_per_poll"] == 14  # one request per asset


def test_sample_validates_and_the_readme_includes_it_verbatim() -> None:
    sample = (HERE / "sample.yaml").read_text()
    readme = (HERE / "README.md").read_text()
    assert f"```yaml\n{sample}```" in readme
    (src,) = yaml.safe_load(sample)
    settings = ModbusSettings.model_validate(src["settings"])
    tags = [ModbusTag.model_validate(t) for t in src["tags"]]
    assert settings.groups == {"fast": 0.1, "default": 1.0, "slow": 10.0}
    ModbusConnector(SourceContext("sample", settings, tags))
    for key in [*ModbusSettings.model_fields, *ModbusTag.model_fields]:
        assert f"`{key}`" in readme, key  # every option is documented


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ({"table": "coil", "type": "float32"}, "type must be 'bool'"),
        ({"type": "bool"}, "needs 'bit'"),
        ({"type": "string"}, "needs 'length'"),
        ({"type": "bits", "bit": 12, "length": 8}, "do not fit"),
        ({"type": "float32", "bit": 2}, "'bit' applies"),
        ({"table": "input", "writable": True}, "read-only"),
        ({"type": "bool", "bit": 1, "scale": 2.0}, "scale and offset"),
        ({"address": 65535, "type": "uint32"}, "runs past"),
        ({"word_order": "middle"}, "word_order"),
        ({"unit_id": 256}, "unit_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_tags_are_refused_with_a_reason(tag: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModbusTag.model_validate({"asset": "a/b/c/d", "signal": "s", "address": 0, **tag})


def test_settings_checks() -> None:
    with pytest.raises(ValidationError, match="not a duration"):
        ModbusSettings.model_validate({"host": "h", "groups": {"fast": "soon"}})
    with pytest.raises(ValidationError, match="default_group"):
        ModbusSettings.model_validate({"host": "h", "groups": {"fast": "100ms"}})
    with pytest.raises(ValidationError):
        ModbusSettings.model_validate({"host": "h", "max_registers_per_request": 126})
    s = ModbusSettings.model_validate({"host": "h", "groups": {"default": 2, "x": "1.5 min"}})
    assert s.groups == {"default": 2.0, "x": 90.0}
    with pytest.raises(ValueError, match="names group 'nope'"):
        ModbusConnector(
            SourceContext(
                "x",
                s,
                [ModbusTag.model_validate({"asset": "a/b", "signal": "s", "address": 0, "group": "nope"})],
            )
        )


def test_a_tag_naming_an_undefined_polling_group_is_a_located_config_error() -> None:
    from shopfloor.config import ConfigError, parse_plant_config
    from shopfloor.config.sources import validate_sources
    from shopfloor.config.yaml_source import parse_yaml

    text = """site: q
assets:
  - path: q/a/l/m
    signals: [{name: x}, {name: y}]
sources:
  - name: plc
    connector: modbus
    settings: {host: 127.0.0.1, groups: {fast: 100ms, slow: 5s}, default_group: fast}
    tags:
      - {asset: q/a/l/m, signal: x, unit_id: 1, table: holding, address: 0, type: int16}
      - {asset: q/a/l/m, signal: y, unit_id: 1, table: holding, address: 1, type: int16, group: medium}
"""
    cfg = parse_plant_config(text, "plant.yaml")
    with pytest.raises(ConfigError) as info:
        validate_sources(cfg, parse_yaml(text, "plant.yaml"))
    (issue,) = info.value.issues
    assert str(issue).startswith("plant.yaml:11:")
    assert issue.key == "sources[0].tags[1].group" and "'medium' is not defined" in issue.message
