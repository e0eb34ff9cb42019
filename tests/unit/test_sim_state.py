"""The simulator's state file: the resume rule, the high-water mark, atomic writes, refusals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from plant_simulator import cli
from plant_simulator.clock import NS, parse_start
from plant_simulator.state import ClockLease, StateError, read_state, resume_start_ns

T0 = parse_start("2026-03-01T00:00:00Z")


def test_without_state_a_run_starts_now_on_a_whole_second(tmp_path: Path) -> None:
    assert resume_start_ns(tmp_path / "none", T0 + 123_456) == T0


def test_resume_is_the_later_of_now_and_one_step_after_the_last_served(tmp_path: Path) -> None:
    lease = ClockLease(tmp_path, 60 * NS)
    lease.reserve_sync(T0)
    lease.served(T0)
    lease.served(T0 + 500 * NS)
    lease.close()
    assert resume_start_ns(tmp_path, T0) == T0 + 501 * NS  # the clock ran ahead of "now"
    assert resume_start_ns(tmp_path, T0 + 10_000 * NS) == T0 + 10_000 * NS  # it was off a while


def test_a_reservation_is_written_before_serving_and_the_mark_never_goes_back(tmp_path: Path) -> None:
    lease = ClockLease(tmp_path, 100 * NS)
    assert lease.needs_write(T0)
    lease.reserve_sync(T0)
    saved = read_state(tmp_path)
    assert saved is not None and saved.served_until_ns == T0 + 100 * NS and not saved.clean_stop
    assert not lease.needs_write(T0 + 40 * NS)  # inside the first half of the reservation: no write
    assert lease.needs_write(T0 + 60 * NS)
    lease.served(T0 + 40 * NS)
    lease.close()
    # a later run with an explicit start in the past keeps the mark of the earlier one
    again = ClockLease(tmp_path, 100 * NS)
    again.reserve_sync(T0 - 3600 * NS)
    again.served(T0 - 3600 * NS)
    again.close()
    saved = read_state(tmp_path)
    assert saved is not None and saved.served_until_ns == T0 + 40 * NS
    assert saved.last_served_ns == T0 - 3600 * NS and saved.clean_stop
    assert not list(tmp_path.glob(".state-*"))  # no temporary file left behind


def test_an_unreadable_state_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="fix or delete it, or give --start"):
        resume_start_ns(tmp_path, T0)


def test_an_explicit_start_wins_over_the_state(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(
        json.dumps({"served_until_ns": T0 + 9 * NS, "last_served_ns": T0 + 9 * NS, "clean_stop": True})
    )
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    explicit = parser.parse_args(["--start", "2020-01-01T00:00:00Z", "--state-dir", str(tmp_path)])
    assert cli.online_start_ns(explicit) == parse_start("2020-01-01T00:00:00Z")
    resumed = parser.parse_args(["--state-dir", str(tmp_path)])
    assert cli.online_start_ns(resumed) >= T0 + 10 * NS
