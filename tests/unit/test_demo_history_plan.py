"""A first demo start stopped during its back-fill rebuilds the same history on the next run, not a shifted copy."""

from __future__ import annotations

from pathlib import Path

from shopfloor.app.demo_history import history_plan

NS = 1_000_000_000
NOW = 1_800_000_000 * NS


def test_the_plan_of_an_interrupted_first_start_is_kept(tmp_path: Path) -> None:
    plan = tmp_path / "var" / "demo" / "history-plan.json"
    first = history_plan(NOW, 35.0, plan)
    assert first == (NOW - 35 * 86400 * NS, 35.0)
    assert plan.exists()
    # the next run, an hour later and asking for another length, rebuilds the very same history
    assert history_plan(NOW + 3600 * NS, 7.0, plan) == first


def test_a_fresh_var_plans_anew(tmp_path: Path) -> None:
    assert history_plan(NOW, 2.5, tmp_path / "a.json") == (NOW - int(2.5 * 86400) * NS, 2.5)
    assert history_plan(NOW + NS, 1.0, tmp_path / "b.json") == (NOW + NS - 86400 * NS, 1.0)
