"""Quality results recorded by inspection (surface camera, lab): each on the lot being made at that instant.

Idempotent by (asset, characteristic, time); a failed result fails its lot. Mixed into the Repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from mes import tables as t
from mes.records import NotFound, upsert, write_audit

VERDICTS = ("pass", "fail", "unknown")


@dataclass(frozen=True)
class InspectionResult:
    """One finding (``characteristic`` e.g. ``surface_scratch``) or a clean image (``surface``, pass)."""

    asset: str
    ts_ns: int
    characteristic: str
    verdict: str
    value: float | None = None  # e.g. the classifier's probability
    unit: str = ""
    source: str = "inspection"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        if not self.characteristic or len(self.characteristic) > 128:
            raise ValueError("characteristic must be 1 to 128 characters")


def _lot_at(conn: Connection, asset: str, ts_ns: int) -> str | None:
    lt = t.lots.c
    started = lt.start_ns.is_(None) | (lt.start_ns <= ts_ns)
    row = conn.execute(
        select(lt.id)
        .where(lt.asset == asset, lt.end_ns >= ts_ns, started)
        .order_by(lt.end_ns, func.length(lt.id), lt.id)
        .limit(1)
    ).first()
    return row.id if row else None


class QualityBook:
    engine: Engine

    def lot_at(self, asset: str, ts_ns: int) -> str | None:
        """The lot of ``asset`` that was being made at ``ts_ns``: the first one ending at or after it."""
        with self.engine.connect() as conn:
            return _lot_at(conn, asset, ts_ns)

    def record_inspection(self, res: InspectionResult) -> tuple[str | None, bool]:
        """Store one result on its lot; returns (lot id or None, created). A fail fails the lot."""
        return self.record_inspections([res])[0]

    def record_inspections(self, results: Sequence[InspectionResult]) -> list[tuple[str | None, bool]]:
        """Store results in one transaction, each on its lot; (lot id or None, created) per result.

        Idempotent: a result already stored (same asset, characteristic and time) is not stored again;
        if it was stored before its lot existed (the MES makes a lot when it ends), it is attached now.
        A fail fails its lot, with an audit row. NotFound names an asset the MES does not know."""
        out: list[tuple[str | None, bool]] = []
        with self.engine.begin() as conn:
            assets = {r.asset for r in results}
            known = set(
                conn.execute(select(t.equipment.c.path).where(t.equipment.c.path.in_(assets))).scalars()
            )
            if unknown := sorted(assets - known):
                raise NotFound(f"unknown asset {unknown[0]!r}")
            stmt = upsert(conn, t.quality_results).on_conflict_do_nothing(
                index_elements=["asset", "characteristic", "ts_ns"]
            )
            for res in results:
                lot = _lot_at(conn, res.asset, res.ts_ns)
                row = {
                    "asset": res.asset,
                    "ts_ns": res.ts_ns,
                    "characteristic": res.characteristic,
                    "value": res.value,
                    "unit": res.unit,
                    "verdict": res.verdict,
                    "lot_id": lot,
                    "source": res.source,
                }
                created = conn.execute(stmt.returning(t.quality_results.c.id), row).first() is not None
                attached = created
                if not created and lot is not None:
                    q = t.quality_results.c
                    key = (q.asset == res.asset, q.characteristic == res.characteristic, q.ts_ns == res.ts_ns)
                    attached = (
                        conn.execute(
                            update(t.quality_results).where(*key, q.lot_id.is_(None)).values(lot_id=lot)
                        ).rowcount
                        > 0
                    )
                if attached and lot is not None and res.verdict == "fail":
                    before = conn.execute(select(t.lots.c.verdict).where(t.lots.c.id == lot)).scalar_one()
                    if before != "fail":
                        conn.execute(update(t.lots).where(t.lots.c.id == lot).values(verdict="fail"))
                        write_audit(
                            conn,
                            res.source,
                            "lot",
                            "verdict",
                            [(lot, {"verdict": before}, {"verdict": "fail"})],
                        )
                out.append((lot, created))
        return out

    def quality_of_lot(self, lot_id: str) -> list[dict[str, Any]]:
        q = t.quality_results.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.quality_results).where(q.lot_id == lot_id).order_by(q.ts_ns, q.id))
            return [dict(r._mapping) for r in rows]
