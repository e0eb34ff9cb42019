"""`shopfloor analytics run` on a real SQLite historian and MES: a developing bearing failure is flagged
before it happens, health and RUL land in the historian, and the maintenance request is opened once.

Models are trained on one simulated plant; the scored plant is another seed, back-filled into the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from analytics import pdm, store
from analytics.dataset import load_sim_dir
from analytics.features import FeatureSpec
from historian.factory import open_store
from mes.db import migrate, open_engine
from mes.repository import Repository
from plant_simulator.config_gen import plant_config
from plant_simulator.lines.cnc import CncMachiningCentre
from plant_simulator.offline import generate
from plant_simulator.plant import Plant
from shopfloor.app.analytics_live import OUTPUTS, AnalyticsService, LiveOptions, mes_opener
from shopfloor.app.backfill import backfill
from shopfloor.config.load import load_plant_config
from shopfloor.model import EventKind

pytestmark = pytest.mark.slow

NS = 1_000_000_000
FAST = {"bearing_onset_days": (4.0, 5.0), "bearing_progression_days": (2.5, 3.5)}
SPEC = FeatureSpec(shape=("mean", "std"))


def cncs(n: int) -> list[CncMachiningCentre]:
    return [CncMachiningCentre(f"plant/machining/line/cnc-{i}", "", **FAST) for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    plant = Plant(cncs(3), seed=101, sensor_fault_interval_days=0, site="plant")
    generate(plant, 16, out / "sim", every=60, progress=None)
    ds = load_sim_dir(out / "sim")
    m, skipped = pdm.train(ds, SPEC, list(ds.assets))
    assert "spindle_bearing" in m.kinds["cnc"].modes, skipped
    return store.save(m, out / "models.npz")


def scored_plant() -> Plant:
    return Plant(cncs(1), seed=7, sensor_fault_interval_days=0, site="plant")


def write_config(tmp: Path, plant: Plant) -> Path:
    doc = plant_config(plant)
    doc["sources"] = []
    doc["historian"] = {"url": f"sqlite:///{tmp / 'hist.db'}", "spool": {"dir": str(tmp / "spool")}}
    doc["mes"]["database"] = f"sqlite:///{tmp / 'mes.db'}"
    path = tmp / "plant.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False))
    return path


class Collect:
    def __init__(self) -> None:
        self.batches: list = []
        self.events: list = []


async def test_live_scoring_flags_the_bearing_before_it_fails_and_opens_one_request(
    models: Path, tmp_path: Path
) -> None:
    plant = scored_plant()
    cfg = load_plant_config(write_config(tmp_path, plant))
    migrate(open_engine(cfg.mes))
    Repository(open_engine(cfg.mes), cfg.mes).sync_plant(
        [(a.path, a.kind, a.description) for a in cfg.assets]
    )
    hist = open_store(cfg.historian)
    await hist.open()
    await backfill(hist, plant, 12 * 24, every=60)
    truth = [r for r in plant.truth() if r.mode == "spindle_bearing"]
    onset = next(r for r in truth if r.event == "onset")
    end = next(r for r in truth if r.event in ("failure", "maintenance"))
    got = Collect()
    pending: list = []

    def publish(batch: object) -> None:
        got.batches.append(batch)
        pending.append(batch)

    opener = mes_opener(cfg)
    assert opener is not None
    opts = LiveOptions(every_s=3600, lookback_days=14, healthy_days=3, state_dir=tmp_path / "state")
    svc = AnalyticsService(
        cfg, store.load(models), hist, publish, lambda ev: got.events.extend(ev), opener, opts
    )
    await svc.cycle()
    for b in pending:
        await hist.write_samples(b)
    await hist.write_events(got.events)
    path = cfg.assets[0].path
    # health and RUL are in the historian, one value per hourly window after the healthy period
    health = await hist.query_raw(path, OUTPUTS[0], 0, 2**62)
    assert len(health) >= 24 * 8
    assert np.all((health.value >= 0) & (health.value <= 1))
    raised = [e for e in got.events if e.kind == EventKind.ALARM and e.code == "pdm_equipment_raise"]
    assert raised, "no equipment alert was raised for the developing bearing"
    first = min(e.ts_ns for e in raised)
    onset_ns = plant.start_ns + int(onset.t_s * 1e9)
    end_ns = plant.start_ns + int(end.t_s * 1e9)
    assert onset_ns < first < end_ns, "the alert must come after the onset and before the failure"
    assert raised[0].data["subject"] == "spindle_bearing"
    repo = Repository(open_engine(cfg.mes), cfg.mes)
    reqs = repo.requests(None, path, 100, None).items
    # this history runs past the failure: the alert came and went inside the one back-scoring cycle, so
    # it stays as its events and opens no request (nobody need act on a bearing already replaced)
    cleared = [e for e in got.events if e.kind == EventKind.ALARM and e.code == "pdm_equipment_clear"]
    assert len([r for r in reqs if r["kind"] == "equipment"]) == len(raised) - len(cleared)
    # a second cycle over the same history and a restarted service write nothing new, open nothing twice
    n_batches = len(got.batches)
    await svc.cycle()
    assert len(got.batches) == n_batches
    again = AnalyticsService(cfg, store.load(models), hist, publish, lambda ev: None, opener, opts)
    await again.cycle()
    assert len(got.batches) == n_batches
    assert len(repo.requests(None, path, 100, None).items) == len(reqs)
    await hist.close()

    # the same plant with its history cut a few hours after the alert: the alert is still raised at the
    # end of the cycle, so exactly one request is opened, for the bearing, at the moment it was raised
    cut = scored_plant()
    raised_at = first - plant.start_ns + cut.start_ns  # the same seed raises at the same plant time
    hours = (raised_at - cut.start_ns) // (3600 * NS) + 6
    assert hours * 3600 * NS < end_ns - plant.start_ns
    (tmp_path / "cut").mkdir()
    ccfg = load_plant_config(write_config(tmp_path / "cut", cut))
    migrate(open_engine(ccfg.mes))
    Repository(open_engine(ccfg.mes), ccfg.mes).sync_plant([(a.path, a.kind, "") for a in ccfg.assets])
    chist = open_store(ccfg.historian)
    await chist.open()
    await backfill(chist, cut, int(hours), every=60)
    copts = LiveOptions(every_s=3600, lookback_days=14, healthy_days=3, state_dir=tmp_path / "cut-state")
    events: list = []
    csvc = AnalyticsService(
        ccfg, store.load(models), chist, lambda b: None, events.extend, mes_opener(ccfg), copts
    )
    await csvc.cycle()
    await chist.close()
    creqs = Repository(open_engine(ccfg.mes), ccfg.mes).requests(None, path, 100, None).items
    equipment = [r for r in creqs if r["kind"] == "equipment"]
    assert [(r["subject"], r["opened_ns"]) for r in equipment] == [("spindle_bearing", raised_at)]


async def test_requests_wait_on_disk_while_the_mes_is_down(models: Path, tmp_path: Path) -> None:
    # the history ends half a day before the bearing fails: its alert is still raised and wants a request
    probe = scored_plant()
    for _ in probe.blocks(12 * 24):
        pass
    end = next(
        r for r in probe.truth() if r.mode == "spindle_bearing" and r.event in ("failure", "maintenance")
    )
    plant = scored_plant()
    cfg = load_plant_config(write_config(tmp_path, plant))
    hist = open_store(cfg.historian)
    await hist.open()
    await backfill(hist, plant, int(end.t_s // 3600) - 12, every=60)
    calls: list[dict] = []

    def down(req: dict) -> None:
        raise ConnectionError("MES database unreachable")

    opts = LiveOptions(every_s=3600, lookback_days=14, healthy_days=3, state_dir=tmp_path / "state")
    svc = AnalyticsService(cfg, store.load(models), hist, lambda b: None, lambda e: None, down, opts)
    await svc.cycle()
    waiting = json.loads((tmp_path / "state" / "live.json").read_text())["pending"]
    assert waiting, "the alert's request must be kept while the MES is down"
    # the MES is back: a new process (same state dir) delivers each waiting request exactly once
    back = AnalyticsService(cfg, store.load(models), hist, lambda b: None, lambda e: None, calls.append, opts)
    await back.cycle()
    await back.cycle()
    assert [c["key"] for c in calls] == [w["key"] for w in waiting]
    await hist.close()


def test_a_model_from_another_library_version_is_refused(models: Path, tmp_path: Path) -> None:
    with np.load(models) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["meta"]["versions"]["scikit-learn"] = "0.1.0"
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    with pytest.raises(store.IncompatibleModel, match=r"scikit-learn 0\.1\.0"):
        store.load(old)
    meta["format"] = 99
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(old, **arrays)
    with pytest.raises(store.IncompatibleModel, match="format 99"):
        store.load(old)
    round_trip = store.save(store.load(models), tmp_path / "again.npz")
    a, b = store.load(models), store.load(round_trip)
    assert a.kinds["cnc"].on == b.kinds["cnc"].on
    np.testing.assert_array_equal(
        a.kinds["cnc"].modes["spindle_bearing"].ref_X, b.kinds["cnc"].modes["spindle_bearing"].ref_X
    )


@pytest.mark.influxdb
async def test_scoring_resumes_after_the_historian_was_down_and_writes_each_window_once(
    models: Path, tmp_path: Path, influxd_private
) -> None:
    """influxd killed between cycles: the cycle fails and is counted; restarted, the next cycle
    scores what the failed one missed, and a further cycle writes nothing twice."""
    plant = scored_plant()
    cfg = load_plant_config(write_config(tmp_path, plant))
    url = f"influxdb-v1+{influxd_private.base_url}/plant"
    influxd_private.create_database("plant")
    hist = open_store(cfg.historian.model_copy(update={"url": url}))
    await hist.open()
    await backfill(hist, plant, 9 * 24, every=60)
    written: list = []
    opts = LiveOptions(every_s=3600, lookback_days=14, healthy_days=3, state_dir=tmp_path / "state")
    svc = AnalyticsService(cfg, store.load(models), hist, written.append, lambda e: None, None, opts)
    await svc.cycle()
    first = sum(len(b) for b in written)
    assert first > 0
    await backfill(hist, plant, 2 * 24, every=60)  # two more days arrive
    influxd_private.kill()
    with pytest.raises(Exception):  # noqa: B017 - any transport error: the service's loop counts it
        await svc.cycle()
    assert sum(len(b) for b in written) == first
    influxd_private.start()
    await svc.cycle()
    caught_up = sum(len(b) for b in written)
    assert caught_up - first == len(OUTPUTS) * 2 * 24  # exactly the two new days of hourly windows
    await svc.cycle()
    assert sum(len(b) for b in written) == caught_up
    ts = np.concatenate([b.ts for b in written])
    assert len(np.unique(ts)) * len(OUTPUTS) == len(ts)  # no window written twice
    await hist.close()
