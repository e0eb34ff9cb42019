"""Report by exception on the live grid: an unchanged signal holds its value, a dead sensor and a silent asset do not."""

from __future__ import annotations

import numpy as np

from analytics.dataset import hold_unchanged

nan = np.nan


def test_a_signal_that_sent_nothing_holds_while_its_asset_delivers_and_a_gap_stays_a_gap() -> None:
    grid = np.array(
        [
            [5.0, nan, nan, 7.0, nan, nan],  # a counter: changed at steps 0 and 3, silent otherwise
            [1.0, 2.0, nan, 3.0, nan, nan],  # a sensor: step 2 had samples, all Bad
        ]
    )
    present = np.array([[True, False, False, True, False, False], [True, True, True, True, False, False]])
    delivering = np.array([True, True, True, True, True, False])  # step 5: the whole asset silent
    out = hold_unchanged(grid, present, delivering)
    assert np.array_equal(out[0], [5.0, 5.0, 5.0, 7.0, 7.0, nan], equal_nan=True)
    assert np.array_equal(out[1], [1.0, 2.0, nan, 3.0, 3.0, nan], equal_nan=True)  # Bad stays NaN
    bad_then_silent = hold_unchanged(
        np.array([[nan, nan]]), np.array([[True, False]]), np.array([True, True])
    )
    assert np.isnan(bad_then_silent).all()  # after Bad samples, silence holds no value either
