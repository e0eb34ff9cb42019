"""An OEE above 100 % is shown as it is and flagged with the reason, on the tile and on the MES headline."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from dashboard import i18n
from dashboard.data import Tile, oee_over_100
from dashboard.pages import mes as mes_page
from dashboard.pages import plant
from mes.kpi import CountArrays, IntervalArrays, kpis
from mes.losses import Loss

H = 3600 * 1_000_000_000


def heat(window_from_h: float) -> Any:
    """A 4 h melt, 06:00-10:00, counted when it ends, seen from ``window_from_h`` to 10:00."""
    iv = IntervalArrays(np.array([0]), np.array([6 * H]), np.array([10 * H]), np.array([int(Loss.RUNNING)]))
    one = np.array([1.0])
    c = CountArrays(
        np.array([0]),
        np.array([10 * H - 60 * 10**9]),
        one,
        one,
        one * 0,
        one * 0,
        one * 4 * 3600,
        one * 0,
        one * 0,
    )
    return kpis(iv, c, round(window_from_h * H), 10 * H, [0])


def tile(k: Any) -> Tile:
    return Tile(
        path="s/a/l/furnace", name="furnace", line="s/a/l", kind="furnace", description="", state="running",
        oee=k.oee, oee_over=oee_over_100(k), alarm=False, alert=False, sensor_fault=False, health=None,
        age_s=1.0, stale=False,
    )  # fmt: skip


def text(component: Any) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json(), ensure_ascii=False)


def test_a_heat_that_began_before_the_shift_reads_200_percent_with_the_reason() -> None:
    k = heat(8.0)
    out = text(plant.tile_view(tile(k)))
    assert "OEE 200 % ⚠" in out
    assert i18n.t("mes.above_ideal", "en") in out
    head = json.dumps([text(c) for c in mes_page.headline(k)], ensure_ascii=False)
    assert "200.0 %" in head and "mes-above-ideal" in head


def test_the_whole_heat_reads_100_percent_without_a_flag() -> None:
    k = heat(6.0)
    out = text(plant.tile_view(tile(k)))
    assert "OEE 100 %" in out and "⚠" not in out
    assert "mes-above-ideal" not in json.dumps([text(c) for c in mes_page.headline(k)])


def test_a_performance_above_100_percent_under_an_oee_below_it_marks_the_mes_page_not_the_tile() -> None:
    # 1 h of running, then 3 h down, in a 4 h window, with 2 h of ideal time counted: performance 200 %,
    # availability 25 %, OEE 50 %
    iv = IntervalArrays(
        np.array([0, 0]), np.array([6 * H, 7 * H]), np.array([7 * H, 10 * H]),
        np.array([int(Loss.RUNNING), int(Loss.BREAKDOWN)]),
    )  # fmt: skip
    one = np.array([1.0])
    c = CountArrays(
        np.array([0]),
        np.array([7 * H - 60 * 10**9]),
        one,
        one,
        one * 0,
        one * 0,
        one * 2 * 3600,
        one * 0,
        one * 0,
    )
    k = kpis(iv, c, 6 * H, 10 * H, [0])
    assert k.effectiveness == 2.0 and k.oee == 0.5 and k.above_ideal
    assert not oee_over_100(k) and "⚠" not in text(plant.tile_view(tile(k)))
    assert "mes-above-ideal" in json.dumps([text(c) for c in mes_page.headline(k)])
