"""The slitting line's camera verdict: per coil, pass or defect and its main class, held until the next coil.

It agrees with the defect counters and the ground-truth defect log of the same coil.
"""

from __future__ import annotations

import numpy as np

from plant_simulator.lines.slitting import DEFECTS, SURFACE_CLASS_CODES, SlittingLine
from plant_simulator.plant import Plant

SLITTER = "works/copper/finishing/slitter-1"


def test_the_verdict_of_each_coil_follows_its_defect_counts() -> None:
    plant = Plant([SlittingLine(SLITTER, "")], seed=2, sensor_fault_interval_days=0)
    blocks = list(plant.blocks(48))
    v = np.concatenate([b.values[SLITTER] for b in blocks], axis=1)
    name = {s.name: i for i, s in enumerate(plant.signals(SLITTER))}
    coils = v[name["coil_count"]]
    ends = np.flatnonzero(np.diff(coils) > 0) + 1
    assert len(ends) > 100
    counts = np.stack([v[name[f"{d}_count"]] for d in DEFECTS])
    per_coil = counts[:, ends] - counts[:, ends - 1]
    verdict, main = v[name["surface_verdict"]], v[name["surface_class"]]
    expect = (per_coil.sum(axis=0) > 0).astype(float)
    assert np.array_equal(verdict[ends], expect)
    assert 0 < expect.sum() < len(ends)  # some coils pass, some do not
    want_class = np.where(expect > 0, per_coil.argmax(axis=0) + 1, 0)
    assert np.array_equal(main[ends], want_class)
    assert set(np.unique(main)) <= set(SURFACE_CLASS_CODES.values())
    # held between coils: the value only changes where a coil ends
    changes = np.flatnonzero(np.diff(verdict) != 0) + 1
    assert set(changes) <= set(ends)
