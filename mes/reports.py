"""KPI reports over the MES records: a window's figures for an asset or a line, and one set per shift.

The API and the dashboard both report through here, so a number is computed one way wherever it is read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mes import calendar, kpi
from mes.records import NotFound
from mes.repository import Repository


def assets_under(repo: Repository, asset: str) -> list[str]:
    """The MES assets at or under ``asset`` (an asset path or a line/area prefix), sorted; NotFound if none."""
    known = sorted(repo.known_assets())
    prefix = asset.rstrip("/") + "/"
    assets = [a for a in known if a == asset or a.startswith(prefix)]
    if not assets:
        raise NotFound(f"unknown asset or line {asset}")
    return assets


def window_kpis(
    repo: Repository, asset: str, start_ns: int, end_ns: int, timezone: str = "UTC"
) -> tuple[list[str], kpi.Kpis]:
    """The KPIs of ``asset`` (or every asset of a line) over [start_ns, end_ns)."""
    assets = assets_under(repo, asset)
    return assets, assets_kpis(repo, assets, start_ns, end_ns, timezone)


def assets_kpis(
    repo: Repository, assets: Sequence[str], start_ns: int, end_ns: int, timezone: str = "UTC"
) -> kpi.Kpis:
    """The KPIs of these assets taken together over [start_ns, end_ns)."""
    iv, cn = repo.kpi_inputs(list(assets), start_ns, end_ns)
    sched = calendar.scheduled(repo.cfg, timezone, start_ns, end_ns)
    plan = calendar.planned(repo.cfg, timezone, start_ns, end_ns, repo.planned_stop_ranges(start_ns, end_ns))
    return kpi.kpis(iv, cn, start_ns, end_ns, list(range(len(assets))), sched, plan)


def each_asset_kpis(
    repo: Repository, assets: Sequence[str], start_ns: int, end_ns: int, timezone: str = "UTC"
) -> dict[str, kpi.Kpis]:
    """The KPIs of each asset on its own over [start_ns, end_ns), from one read of the records."""
    if not assets:
        return {}
    iv, cn = repo.kpi_inputs(list(assets), start_ns, end_ns)
    sched = calendar.scheduled(repo.cfg, timezone, start_ns, end_ns)
    plan = calendar.planned(repo.cfg, timezone, start_ns, end_ns, repo.planned_stop_ranges(start_ns, end_ns))
    return {a: kpi.kpis(iv, cn, start_ns, end_ns, [i], sched, plan) for i, a in enumerate(assets)}


def shift_kpis(
    repo: Repository, asset: str, start_ns: int, end_ns: int, timezone: str = "UTC"
) -> tuple[list[str], list[tuple[str, int, int, kpi.Kpis]]]:
    """One KPI set per shift instance of the calendar in [start_ns, end_ns): (name, start, end, kpis).

    ValueError if no shifts are configured (mes.shifts)."""
    if not repo.cfg.shifts:
        raise ValueError("no shifts are configured (mes.shifts)")
    assets = assets_under(repo, asset)
    windows, names = calendar.lay_out(list(repo.cfg.shifts), timezone, start_ns, end_ns)
    windows = np.clip(windows, start_ns, end_ns)
    iv, cn = repo.kpi_inputs(assets, start_ns, end_ns)
    plan = calendar.planned(repo.cfg, timezone, start_ns, end_ns, repo.planned_stop_ranges(start_ns, end_ns))
    ks = kpi.kpis_by(iv, cn, windows, list(range(len(assets))), windows, plan)
    return assets, [(n, int(w[0]), int(w[1]), k) for n, w, k in zip(names, windows, ks, strict=True)]
