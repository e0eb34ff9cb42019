"""The one backoff: exponential growth up to a cap, equal jitter (half fixed, half random), Retry-After."""

from __future__ import annotations

import random

import pytest

from shopfloor.backoff import Backoff


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    b = Backoff(0.1, 10.0, 2.0, random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0.05 <= d <= 10.0 for d in delays)
    assert delays[6] > delays[0] * 8  # exponential
    assert len({round(d, 6) for d in delays}) == 10  # jittered, not a fixed ladder
    assert b.next(retry_after_s=25.0) >= 25.0
    b.reset()
    assert b.next() <= 0.1


def test_every_delay_is_between_half_and_all_of_its_step() -> None:
    b = Backoff(1.0, 8.0, rng=random.Random(7))
    for step in [1, 2, 4, 8, 8, 8]:
        assert step / 2 <= b.next() <= step


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="max_s"):
        Backoff(2, 1)
