"""Plugin discovery: only used names load; duplicates and API mismatches name the distribution."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopfloor.config import ConfigError, parse_plant_config
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import parse_yaml
from shopfloor.plugins import PluginError, available, load


def fake_distribution(
    root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """An installed distribution, as importlib.metadata sees one: a .dist-info folder and modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[shopfloor.connectors]\n{lines}\n")
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))


CONNECTOR = """
from shopfloor.connector import Connector, ConnectorSpec, SettingsBase, TagBase

class Settings(SettingsBase):
    host: str
    port: int = 102

class Tag(TagBase):
    address: str

class Good(Connector):
    spec = ConnectorSpec(name="{name}", settings_model=Settings, tag_model=Tag, api_version={api})
    async def start(self, sink): pass
    async def stop(self): pass
"""


@pytest.fixture
def site_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]


@pytest.fixture
def s7_plugin(site_dir: Path) -> Path:
    """An installed distribution shopfloor-s7 0.3.1 registering a connector named s7."""
    fake_distribution(
        site_dir,
        "shopfloor-s7",
        "0.3.1",
        {"s7": "fake_s7:Good"},
        {"fake_s7": CONNECTOR.format(name="s7", api=1)},
    )
    return site_dir


def test_a_plugin_is_found_by_its_entry_point_and_loaded_only_when_used(s7_plugin: Path) -> None:
    infos = {i.name: i for i in available()}
    assert infos["s7"].distribution == "shopfloor-s7" and infos["s7"].version == "0.3.1"
    assert "fake_s7" not in sys.modules  # listing imports nothing
    cls = load("s7")
    assert cls.spec.name == "s7" and "fake_s7" in sys.modules


def test_duplicate_names_are_refused_naming_both_distributions(site_dir: Path) -> None:
    fake_distribution(
        site_dir / "a",
        "vendor-a",
        "1.2",
        {"s7x": "fake_a:Good"},
        {"fake_a": CONNECTOR.format(name="s7x", api=1)},
    )
    fake_distribution(
        site_dir / "b",
        "vendor-b",
        "0.3",
        {"s7x": "fake_b:Good"},
        {"fake_b": CONNECTOR.format(name="s7x", api=1)},
    )
    sys.path[:0] = [str(site_dir / "a"), str(site_dir / "b")]
    try:
        with pytest.raises(PluginError, match=r"more than one distribution: .*vendor-a 1\.2.*vendor-b 0\.3"):
            load("s7x")
    finally:
        sys.path.remove(str(site_dir / "a"))
        sys.path.remove(str(site_dir / "b"))


def test_api_mismatch_and_import_errors_name_the_distribution(site_dir: Path) -> None:
    fake_distribution(site_dir, "shopfloor-future", "9.0", {"future": "fake_future:Good", "broken": "fake_broken:Good"},
                      {"fake_future": CONNECTOR.format(name="future", api=99), "fake_broken": "import not_a_module_xyz\n"})  # fmt: skip
    with pytest.raises(
        PluginError, match=r"shopfloor-future 9\.0 .*built for connector API 99; this Shopfloor speaks API 1"
    ):
        load("future")
    with pytest.raises(PluginError, match=r"shopfloor-future 9\.0 .*failed to import: ModuleNotFoundError"):
        load("broken")


def test_unknown_connector_and_bad_plugin_settings_are_located_config_errors(s7_plugin: Path) -> None:
    text = """site: q
assets:
  - path: q/a/l/m
    signals: [{name: x}]
sources:
  - name: plc
    connector: s7
    settings: {host: plc1, port: seven}
    tags:
      - {asset: q/a/l/m, signal: x, address: DB1.0}
      - {asset: q/a/l/m, signal: y, address: DB1.4}
      - {asset: q/a/l/m, signal: x, adress: DB1.8}
  - name: other
    connector: s8
"""
    cfg = parse_plant_config(text, "plant.yaml")
    with pytest.raises(ConfigError) as info:
        validate_sources(cfg, parse_yaml(text, "plant.yaml"))
    msgs = [str(i) for i in info.value.issues]
    assert any(m.startswith("plant.yaml:8:") and "sources[0].settings.port" in m for m in msgs), msgs
    assert any(
        m.startswith("plant.yaml:11:") and "sources[0].tags[1].signal" in m and "no signal 'y'" in m
        for m in msgs
    ), msgs
    assert any(
        m.startswith("plant.yaml:12:") and "tags[2].adress" in m and "did you mean 'address'" in m
        for m in msgs
    ), msgs
    assert any(
        m.startswith("plant.yaml:14:") and "sources[1].connector" in m and "unknown connector 's8'" in m
        for m in msgs
    ), msgs


def test_secrets_in_any_connectors_settings_are_refused_at_their_line(s7_plugin: Path) -> None:
    text = """site: q
assets:
  - path: q/a/l/m
    signals: [{name: x}]
sources:
  - name: plc
    connector: s7
    settings:
      host: plc1
      token: hunter2
"""
    cfg = parse_plant_config(text, "plant.yaml")
    with pytest.raises(ConfigError) as info:
        validate_sources(cfg, parse_yaml(text, "plant.yaml"))
    (issue,) = info.value.issues  # the plugin's own "unknown key" error is not added on top
    assert str(issue).startswith("plant.yaml:10:7: sources[0].settings.token: secrets may not be written")
    assert "hunter2" not in str(issue)
