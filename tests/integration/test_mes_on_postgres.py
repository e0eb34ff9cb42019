"""The MES derivation, repository and lot tests of tests/unit, run again on a real PostgreSQL: the same
suite on both databases (the unit modules bring the tests, this module the PostgreSQL fixtures).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import test_mes_derive as derive_tests
import test_mes_lots as lots_tests

from mes.db import migrate, open_engine
from mes.repository import Repository

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = open_engine(pg_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def repo(engine: Engine) -> Repository:
    r = Repository(engine, derive_tests.CFG)
    r.sync_plant([(derive_tests.A, "press", "test press")])
    return r


for _module in (derive_tests, lots_tests):
    for _name in dir(_module):
        if _name.startswith("test_"):
            globals()[f"{_name}_on_postgres"] = getattr(_module, _name)
