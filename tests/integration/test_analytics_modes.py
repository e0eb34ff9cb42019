"""Each equipment failure mode of the virtual plant is flagged before it ends, on a seed never trained on.

Training and scoring plants differ in seed; degradation is made to come within days so the run stays short.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics import pdm
from analytics.dataset import load_sim_dir
from analytics.episodes import episodes
from analytics.features import FeatureSpec
from plant_simulator.lines.base import AssetModel
from plant_simulator.lines.caster import ContinuousCaster
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.lines.extrusion import ExtrusionPress
from plant_simulator.lines.rolling import RollingMill
from plant_simulator.offline import generate
from plant_simulator.plant import Plant

pytestmark = pytest.mark.slow

SOON = (4.5, 5.5)
SPAN = (2.5, 3.5)
SPEC = FeatureSpec(shape=("mean", "std"))


def assets(n: int, site: str) -> list[AssetModel]:
    out: list[AssetModel] = []
    for i in range(1, n + 1):
        out += [
            CncMachiningCentre(
                f"{site}/m/l/cnc-{i}", "", bearing_onset_days=SOON, bearing_progression_days=SPAN
            ),
            RollingMill(
                f"{site}/c/l/mill-{i}", "", hot=False, bearing_onset_days=SOON, bearing_progression_days=SPAN
            ),
            ContinuousCaster(
                f"{site}/c/l/caster-{i}", "", cavitation_onset_days=SOON, cavitation_progression_days=SPAN
            ),
            ExtrusionPress(f"{site}/a/l/press-{i}", "", pump_onset_days=SOON, pump_progression_days=SPAN),
        ]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> pdm.Models:
    out = tmp_path_factory.mktemp("modes")
    generate(
        Plant(assets(3, "train"), seed=41, sensor_fault_interval_days=0), 18, out, every=60, progress=None
    )
    ds = load_sim_dir(out)
    models, skipped = pdm.train(ds, SPEC, list(ds.assets))
    assert not skipped, skipped
    return models


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("held-out")
    generate(
        Plant(assets(1, "test"), seed=977, sensor_fault_interval_days=4), 13, out, every=60, progress=None
    )
    return out


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        ("cnc", "spindle_bearing"),
        ("cold_rolling_mill", "main_drive_bearing"),
        ("continuous_caster", "cooling_water_pump_cavitation"),
        ("extrusion_press", "hydraulic_pump"),
    ],
)
def test_failure_mode_is_flagged_between_onset_and_end(
    trained: pdm.Models, scored: Path, kind: str, mode: str
) -> None:
    ds = load_sim_dir(scored)
    frame = next(f for f in ds.assets.values() if f.kind == kind)
    hm, feats = pdm.fit_blind(frame, SPEC, days=3.0)
    km = trained.kinds[kind]
    assert mode in km.modes
    sc = pdm.score(frame, feats, hm, km)
    alerts = [a for a in pdm.alerts(sc, km) if a.kind == "equipment"]
    ep = episodes(ds.log, frame.asset)[0]
    assert ep.mode == mode and ep.onset_ns is not None
    inside = [a for a in alerts if ep.onset_ns < a.t_ns <= ep.end_ns]
    assert inside, f"no alert between onset and {'failure' if ep.failed else 'repair'}"
    assert inside[0].failure_mode == mode
    assert not [a for a in alerts if a.t_ns <= ep.onset_ns], "an alert before the defect began"
    lead_h = (ep.end_ns - inside[0].t_ns) / 3.6e12
    assert lead_h > 6, f"flagged only {lead_h:.1f} h ahead"
