"""OPC UA connector config and status map: models, layering, refusals, the sample config and README."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from asyncua import ua
from pydantic import ValidationError

from connectors.opcua.browse import asset_and_signal, glob_to_regex
from connectors.opcua.config import NS0_URI, OpcUaSettings, OpcUaTag, parse_node_id
from connectors.opcua.status_map import code_of, override_table, qualities, quality_of, status_name
from shopfloor.config import load_plant_config
from shopfloor.model import ASSET_PATH_RE, Quality
from shopfloor.plugins import load

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "connectors" / "opcua"
URI = "urn:shopfloor:plant-simulator"


# -- status map --------------------------------------------------------------------------------
def test_every_known_status_code_maps_by_its_severity() -> None:
    names = [n for n in dir(ua.StatusCodes) if not n.startswith("_")]
    codes = np.array([getattr(ua.StatusCodes, n) for n in names], dtype=np.uint32)
    vector = qualities(codes)
    for name, code, q in zip(names, codes.tolist(), vector.tolist(), strict=True):
        want = (
            Quality.GOOD
            if name.startswith("Good")
            else Quality.UNCERTAIN
            if name.startswith("Uncertain")
            else Quality.BAD
        )
        assert name.startswith(("Good", "Uncertain", "Bad")), name
        assert quality_of(code) is want and q == want, name
    assert len(names) > 200


def test_simulator_fault_codes_and_info_bits() -> None:
    assert quality_of(ua.StatusCodes.BadSensorFailure) is Quality.BAD
    assert quality_of(ua.StatusCodes.UncertainLastUsableValue) is Quality.UNCERTAIN
    assert quality_of(ua.StatusCodes.UncertainSensorNotAccurate) is Quality.UNCERTAIN
    assert quality_of(ua.StatusCodes.GoodClamped) is Quality.GOOD
    assert quality_of(ua.StatusCodes.Good | 0x0400 | 0x0100) is Quality.GOOD  # overflow + limit low bits
    assert quality_of(0xC0000000) is Quality.BAD  # reserved severity 11
    assert status_name(ua.StatusCodes.BadNodeIdUnknown) == "BadNodeIdUnknown"
    assert status_name(ua.StatusCodes.BadSensorFailure | 0x0300) == "BadSensorFailure"


def test_overrides_move_named_codes_only() -> None:
    table = override_table({"UncertainInitialValue": "good"})
    codes = np.array(
        [ua.StatusCodes.UncertainInitialValue, ua.StatusCodes.UncertainLastUsableValue], np.uint32
    )
    assert qualities(codes, table).tolist() == [Quality.GOOD, Quality.UNCERTAIN]
    with pytest.raises(ValueError, match="did you mean UncertainInitialValue"):
        code_of("UncertainInitalValue")


# -- node ids and settings ---------------------------------------------------------------------
def test_node_ids_by_uri_only() -> None:
    ref = parse_node_id(f"nsu={URI};s=qijiang/copper/hot-rolling/mill-1/roll_force")
    assert (ref.uri, ref.kind, ref.identifier) == (URI, "s", "qijiang/copper/hot-rolling/mill-1/roll_force")
    assert parse_node_id("ns=0;i=2258").uri == NS0_URI
    with pytest.raises(ValueError, match="namespace index 2: write the namespace URI"):
        parse_node_id("ns=2;s=x")
    with pytest.raises(ValidationError, match="namespace index"):
        OpcUaTag(asset="a/b", signal="x", node_id="ns=3;i=5")
    tag = OpcUaTag(asset="a/b", signal="x", node_id="i=1001")
    assert tag.ref(URI).uri == URI and tag.ref(None).uri == NS0_URI


def test_generated_plant_config_validates_with_the_opcua_models() -> None:
    cfg = load_plant_config(ROOT / "examples" / "qijiang-plant.yaml", check_sources=True)
    (src,) = [s for s in cfg.sources if s.connector == "opcua"]
    settings = OpcUaSettings.model_validate(src.settings)
    assert settings.security_policy == "None" and settings.mode == "subscribe"
    assert all(OpcUaTag.model_validate(t).ref(settings.namespace_uri).uri == URI for t in src.tags)
    assert load("opcua").spec.name == "opcua"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"password": "x"}, "may not be written in the config"),
        ({"security_policy": "Basic256Sha256", "security_mode": "None"}, "go together"),
        ({"identity": "username", "username": "u"}, "needs password_env or password_file"),
        ({"identity": "certificate"}, "needs user_certificate"),
        ({"endpoint": "http://plc:4840"}, "expected opc.tcp://"),
        ({"reconnect_initial_s": 10, "reconnect_max_s": 5}, "at least reconnect_initial_s"),
        ({"status_overrides": {"GoodNess": "good"}}, "unknown OPC UA status code"),
        ({"subscription": {"queue_size": 0}}, "greater than or equal to 1"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(extra: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpcUaSettings.model_validate({"endpoint": "opc.tcp://plc:4840"} | extra)


def test_security_defaults_to_sign_and_encrypt() -> None:
    s = OpcUaSettings(endpoint="opc.tcp://plc:4840")
    assert (s.security_policy, s.security_mode) == ("Basic256Sha256", "SignAndEncrypt")


def test_monitoring_layers_tag_then_group_then_defaults() -> None:
    s = OpcUaSettings.model_validate(
        {
            "endpoint": "opc.tcp://plc:4840",
            "subscription": {"publishing_interval_ms": 500, "queue_size": 5},
            "groups": {
                "slow": {"publishing_interval_ms": 5000, "deadband_type": "absolute", "deadband_value": 2}
            },
        }
    )
    plain = s.monitoring(OpcUaTag(asset="a/b", signal="x", node_id="i=1"))
    grouped = s.monitoring(OpcUaTag(asset="a/b", signal="y", node_id="i=2", group="slow", deadband_value=0.5))
    assert (plain.publishing_interval_ms, plain.queue_size, plain.deadband_type) == (500, 5, "none")
    assert (grouped.publishing_interval_ms, grouped.queue_size) == (5000, 5)
    assert (grouped.deadband_type, grouped.deadband_value) == ("absolute", 0.5)
    with pytest.raises(ValueError, match="unknown group 'fast' \\(groups: slow\\)"):
        s.monitoring(OpcUaTag(asset="a/b", signal="z", node_id="i=3", group="fast"))


# -- sample config and README ------------------------------------------------------------------
def test_sample_config_validates_and_readme_includes_it_verbatim() -> None:
    sample = (PKG / "sample.yaml").read_text(encoding="utf-8")
    (src,) = yaml.safe_load(sample)
    settings = OpcUaSettings.model_validate(src["settings"])
    tags = [OpcUaTag.model_validate(t) for t in src["tags"]]
    for t in tags:
        settings.monitoring(t)  # groups exist
    assert f"```yaml\n{sample}```" in (PKG / "README.md").read_text(encoding="utf-8")


# -- browse helpers ----------------------------------------------------------------------------
def test_browse_glob_and_names() -> None:
    rx = glob_to_regex("qijiang/*/hot-rolling/**")
    assert rx.match("qijiang/copper/hot-rolling/mill-1/roll_force")
    assert not rx.match("qijiang/copper/casting/caster-1/x")
    assert glob_to_regex("**/{roll_force,strip_temp}").match("a/b/c/strip_temp")
    assert glob_to_regex("a/?/c").match("a/b/c") and not glob_to_regex("a/*").match("a/b/c")
    asset, signal = asset_and_signal(("PLC 1", "Motor#2", "Speed (rpm)"), "plant")
    assert ASSET_PATH_RE.match(asset) and signal == "Speed__rpm_"
    assert asset_and_signal(("Temp",), "plant")[0] == "plant/device"


def test_browse_pattern_without_a_slash_matches_any_one_segment() -> None:
    rx = glob_to_regex("*hot-rolling*")  # the README example
    assert rx.match("qijiang/copper/hot-rolling/mill-1/roll_force")
    assert not rx.match("qijiang/copper/cold-rolling/mill-2/roll_force")
    assert glob_to_regex("roll_force").match("qijiang/copper/hot-rolling/mill-1/roll_force")
    assert not glob_to_regex("roll").match("qijiang/copper/hot-rolling/mill-1/roll_force")  # whole segments
    assert glob_to_regex("{strip_temp,roll_force}").match("a/b/strip_temp")
    # with a slash the pattern is anchored at the root, as before
    assert not glob_to_regex("hot-rolling/*").match("qijiang/copper/hot-rolling/mill-1")
