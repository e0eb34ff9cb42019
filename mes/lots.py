"""Lots and genealogy from counter increments: every increment of a lot rule's counter closes a lot, which
consumes its inputs' waiting lots (one, each, all, or by quantity); ``trace`` walks the genealogy either way.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, or_, select, update

from mes import tables as t
from mes.derive import Increment
from mes.records import upsert
from shopfloor.config.mes import LotRuleConfig, MesConfig

NS = 1_000_000_000
COUNT_UNIT = "units"  # a rule with this unit and no quantity signal counts lots: 1 per lot
MAX_LOTS_PER_INCREMENT = 1000  # a bigger jump of a lot counter is a glitch, not production
_CHUNK = 900  # ids per IN (...) query; below SQLite's and PostgreSQL's bind-parameter limits

Key = tuple[str, str]  # (asset, signal)


class LotNotFound(LookupError):
    """No lot with that id."""


def _reject_signal(rule: LotRuleConfig, rejects: Mapping[str, str]) -> str | None:
    """The reject counter of a rule: ``rejects[asset]`` (an override), else the rule's ``reject``."""
    return rejects.get(rule.asset) or rule.reject


def lot_counters(cfg: MesConfig, rejects: Mapping[str, str] | None = None) -> set[Key]:
    """Every (asset, signal) whose increments the lot rules need: counters, quantity counters, the
    energy counter of each rule's asset (when ``cfg.assets`` maps it) and reject counters.

    ``rejects`` maps an asset path to a reject counter, overriding the rule's ``reject``.
    """
    energy = {a.path: a.energy for a in cfg.assets if a.energy}
    out: set[Key] = set()
    for rule in cfg.lots:
        out.add((rule.asset, rule.counter))
        if rule.quantity:
            out.add((rule.asset, rule.quantity))
        if rule.asset in energy:
            out.add((rule.asset, energy[rule.asset]))
        rej = _reject_signal(rule, rejects or {})
        if rej:
            out.add((rule.asset, rej))
    return out


@dataclass
class LotStats:
    """What one ``LotMaker.apply`` did."""

    lots: int = 0  # lots inserted (each piece of a split counts)
    links: int = 0  # parent -> child links inserted
    consumed: int = 0  # input lots marked consumed
    untraced: int = 0  # lots of a rule with inputs that found no input lot waiting (no parent)
    partial: int = 0  # lots that found waiting lots of some input assets but not of all
    replayed: int = 0  # lots (counted before any split) that already existed: a replay, nothing written
    rejects: int = 0  # reject increments recorded as quality results
    refused: int = 0  # increments of more than max_lots_per_increment lots (counter glitches)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Rule:
    cfg: LotRuleConfig
    rank: int  # position in flow order (inputs first)
    prefix: str
    energy: str | None
    reject: str | None


class LotMaker:
    """Makes lots and links from the deriver's increments, inside the caller's transaction.

    Stateless between calls: a counter's value at a lot's end is read from the increments given, else
    from the ``cursors`` table (its last sample), and its value at the lot's start is the previous lot's
    ``qty_mark`` / ``energy_mark``. Replaying increments changes nothing (lot ids are deterministic).
    """

    def __init__(
        self,
        cfg: MesConfig,
        rejects: Mapping[str, str] | None = None,
        max_lots_per_increment: int = MAX_LOTS_PER_INCREMENT,
    ) -> None:
        self.cfg = cfg
        self.rejects = dict(rejects or {})
        self.max_lots_per_increment = max_lots_per_increment
        energy = {a.path: a.energy for a in cfg.assets if a.energy}
        prefixes: dict[str, str] = {}
        rules: list[_Rule] = []
        for rank, rule in enumerate(_flow_order(cfg.lots)):
            prefix = rule.serial_prefix or rule.asset.rstrip("/").rsplit("/", 1)[-1]
            if prefix in prefixes:
                raise ValueError(
                    f"mes.lots: the rules of {prefixes[prefix]} and {rule.asset} would both make lots "
                    f"named {prefix}-N; give one of them a serial_prefix"
                )
            prefixes[prefix] = rule.asset
            rules.append(
                _Rule(rule, rank, prefix, energy.get(rule.asset), _reject_signal(rule, self.rejects))
            )
        self.rules = rules

    @property
    def counters(self) -> set[Key]:
        """The (asset, signal) counters to hand the deriver as ``lot_counters``."""
        return lot_counters(self.cfg, self.rejects)

    # -- applying ------------------------------------------------------------------------------
    def apply(self, conn: Connection, increments: Sequence[Increment]) -> LotStats:
        """Close the lots these increments finished, link and consume their inputs, record rejects."""
        stats = LotStats()
        series: dict[Key, list[Increment]] = defaultdict(list)
        for inc in increments:
            series[(inc.asset, inc.signal)].append(inc)
        for incs in series.values():
            incs.sort(key=lambda i: i.ts_ns)
        events = [
            (inc.ts_ns, rule.rank, inc.value, rule, inc)
            for rule in self.rules
            for inc in series.get((rule.cfg.asset, rule.cfg.counter), ())
        ]
        events.sort(key=lambda e: e[:3])  # time order; at one instant upstream rules first
        cursor: dict[Key, float | None] = {}
        if events:
            cursor = self._cursor_values(conn)
        for _, _, _, rule, inc in events:
            self._close(conn, rule, inc, series, cursor, stats)
        for rule in self.rules:
            if rule.reject:
                for inc in series.get((rule.cfg.asset, rule.reject), ()):
                    self._reject(conn, rule, inc, stats)
        return stats

    def _cursor_values(self, conn: Connection) -> dict[Key, float | None]:
        wanted = {(r.cfg.asset, s) for r in self.rules for s in (r.cfg.quantity, r.energy) if s}
        if not wanted:
            return {}
        c = t.cursors.c
        rows = conn.execute(
            select(c.asset, c.signal, c.value).where(c.asset.in_(sorted({a for a, _ in wanted})))
        )
        return {(r.asset, r.signal): r.value for r in rows if (r.asset, r.signal) in wanted}

    def _close(
        self,
        conn: Connection,
        rule: _Rule,
        inc: Increment,
        series: Mapping[Key, list[Increment]],
        cursor: Mapping[Key, float | None],
        stats: LotStats,
    ) -> None:
        r, lt = rule.cfg, t.lots.c
        ts = inc.ts_ns
        k = max(1, round(inc.delta))
        if k > self.max_lots_per_increment:
            stats.refused += 1
            return
        v = round(inc.value)
        bases = [b for n in range(v - k + 1, v + 1) if (b := self._base_id(conn, rule, n, ts)) is not None]
        stats.replayed += k - len(bases)
        if not bases:
            return
        prev = conn.execute(
            select(lt.end_ns, lt.qty_mark, lt.energy_mark)
            .where(lt.asset == r.asset, lt.kind == r.kind, lt.end_ns < ts)
            .order_by(lt.end_ns.desc())
            .limit(1)
        ).first()
        prev_end = prev.end_ns if prev else None
        n_lots = k * r.pieces
        qty_mark: float | None = None
        if r.quantity:
            amount, qty_mark = _amount(
                series.get((r.asset, r.quantity), []),
                ts,
                prev_end,
                prev.qty_mark if prev else None,
                cursor.get((r.asset, r.quantity)),
            )
            counted_qty: float | None = (amount or 0.0) / n_lots
        else:
            counted_qty = None
        energy: float | None = None
        energy_mark: float | None = None
        if rule.energy:
            e_amount, energy_mark = _amount(
                series.get((r.asset, rule.energy), []),
                ts,
                prev_end,
                prev.energy_mark if prev else None,
                cursor.get((r.asset, rule.energy)),
            )
            energy = None if e_amount is None else e_amount / n_lots
        order_id, product = _order_at(conn, r.asset, ts)
        for base in bases:
            ids = [base] if r.pieces == 1 else [f"{base}.{i}" for i in range(1, r.pieces + 1)]
            if r.consume == "quantity":
                need = (counted_qty or 0.0) * len(ids)
                parents = self._draw_inputs(conn, rule, ts, stats, len(ids), need)
            else:
                parents = self._take_inputs(conn, rule, ts, stats, len(ids))
            quantity = counted_qty
            if quantity is None:
                units = {p["unit"] for p in parents}
                inherit = bool(parents) and r.quantity_unit != COUNT_UNIT and units == {r.quantity_unit}
                quantity = sum(p["quantity"] for p in parents) / r.pieces if inherit else 1.0
            conn.execute(
                upsert(conn, t.lots).on_conflict_do_nothing(index_elements=["id"]),
                [
                    {
                        "id": lot_id,
                        "kind": r.kind,
                        "asset": r.asset,
                        "product": product,
                        "order_id": order_id,
                        "start_ns": prev_end,
                        "end_ns": ts,
                        "quantity": quantity,
                        "unit": r.quantity_unit,
                        "energy_kwh": energy,
                        "qty_mark": qty_mark,
                        "energy_mark": energy_mark,
                        "remaining": quantity,
                        "consumed": False,
                        "verdict": "unknown",
                    }
                    for lot_id in ids
                ],
            )
            stats.lots += len(ids)
            links = [
                {"parent": p["id"], "child": c, "quantity": p.get("drawn", p["quantity"]) / len(ids)}
                for p in parents
                for c in ids
            ]
            if links:
                conn.execute(
                    upsert(conn, t.lot_links).on_conflict_do_nothing(index_elements=["parent", "child"]),
                    links,
                )
                stats.links += len(links)
        if rule.reject:
            self._claim_rejects(conn, rule, bases[0] if r.pieces == 1 else f"{bases[0]}.1", prev_end, ts)

    def _base_id(self, conn: Connection, rule: _Rule, n: int, ts: int) -> str | None:
        """The id of lot ``n`` closed at ``ts`` (before any piece suffix); None when it exists (a replay).

        ``{prefix}-{n}``; when a counter reset made that id an older lot's, ``{prefix}-{n}@{UTC time}``.
        """
        base = f"{rule.prefix}-{n}"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts // NS))
        lt = t.lots.c
        for cand in (base, f"{base}@{stamp}", f"{base}@{ts}"):
            first = cand if rule.cfg.pieces == 1 else f"{cand}.1"
            row = conn.execute(select(lt.asset, lt.end_ns).where(lt.id == first)).first()
            if row is None:
                return cand
            if row.asset == rule.cfg.asset and row.end_ns == ts:
                return None
        raise ValueError(f"lot ids {base}, {base}@{stamp} and {base}@{ts} are all taken by other lots")

    def _take_inputs(
        self, conn: Connection, rule: _Rule, ts: int, stats: LotStats, n_children: int
    ) -> list[dict[str, Any]]:
        """Waiting lots of the input assets that ended at or before ``ts``, marked consumed: the oldest of
        them all ('one': parallel machines feeding one station), the oldest of each input ('each': an
        assembly of different parts) or every one ('all': a merge)."""
        r, lt = rule.cfg, t.lots.c
        if not r.inputs:
            return []
        fifo = (lt.end_ns, func.length(lt.id), lt.id)  # FIFO; n-9 before n-10 at one instant
        waiting = (lt.consumed.is_(False), lt.end_ns <= ts)
        parents: list[dict[str, Any]] = []
        found = 0
        if r.consume == "one":
            q = (
                select(lt.id, lt.quantity, lt.unit)
                .where(lt.asset.in_(r.inputs), *waiting)
                .order_by(*fifo)
                .limit(1)
            )
            parents = [dict(x._mapping) for x in conn.execute(q)]
            found = len(r.inputs) if parents else 0
        else:
            for src in r.inputs:
                q = select(lt.id, lt.quantity, lt.unit).where(lt.asset == src, *waiting).order_by(*fifo)
                got = [dict(x._mapping) for x in conn.execute(q.limit(1) if r.consume == "each" else q)]
                found += bool(got)
                parents += got
        if parents:
            conn.execute(update(t.lots).where(lt.id.in_([p["id"] for p in parents])).values(consumed=True))
            stats.consumed += len(parents)
        if not found:
            stats.untraced += n_children
        elif found < len(r.inputs):
            stats.partial += n_children
        return parents

    def _draw_inputs(
        self, conn: Connection, rule: _Rule, ts: int, stats: LotStats, n_children: int, need: float
    ) -> list[dict[str, Any]]:
        """'quantity' mode: draw ``need`` (in this rule's unit) from the waiting input lots oldest first;
        a lot drawn to nothing is consumed. Each parent carries what was drawn from it, in its own unit."""
        r, lt = rule.cfg, t.lots.c
        parents: list[dict[str, Any]] = []
        left = need
        for src in r.inputs:
            if left <= 1e-9:
                break
            rows = conn.execute(
                select(lt.id, lt.quantity, lt.unit, lt.remaining)
                .where(lt.asset == src, lt.consumed.is_(False), lt.end_ns <= ts)
                .order_by(lt.end_ns, func.length(lt.id), lt.id)
            ).all()
            for row in rows:
                if left <= 1e-9:
                    break
                scale = _unit_scale(r.quantity_unit, row.unit)  # this rule's unit -> the parent's
                if scale is None:
                    continue
                have = row.remaining if row.remaining is not None else row.quantity
                take = min(have, left * scale)
                if take <= 0:
                    continue
                rest = have - take
                gone = rest <= 1e-9 * max(1.0, row.quantity)
                conn.execute(
                    update(t.lots)
                    .where(lt.id == row.id)
                    .values(remaining=0.0 if gone else rest, consumed=gone)
                )
                stats.consumed += gone
                left -= take / scale
                parents.append({"id": row.id, "quantity": row.quantity, "unit": row.unit, "drawn": take})
        if not parents:
            stats.untraced += n_children
        elif left > 1e-9 * max(1.0, need):
            stats.partial += n_children  # made of more than was waiting upstream (a melt not yet tapped)
        return parents

    def _claim_rejects(
        self, conn: Connection, rule: _Rule, lot_id: str, prev_end: int | None, ts: int
    ) -> None:
        """Rejects recorded before this lot closed (in its interval) are its; the lot fails."""
        q = t.quality_results.c
        where = [
            q.asset == rule.cfg.asset,
            q.characteristic == rule.reject,
            q.source == "derived",
            q.lot_id.is_(None),
            q.ts_ns <= ts,
        ]
        if prev_end is not None:
            where.append(q.ts_ns > prev_end)
        res = conn.execute(update(t.quality_results).where(and_(*where)).values(lot_id=lot_id))
        if res.rowcount:
            self._fail(conn, rule, ts)

    def _reject(self, conn: Connection, rule: _Rule, inc: Increment, stats: LotStats) -> None:
        """A reject increment: a failed quality result of the first lot ending at or after it (NULL lot
        until that lot closes; ``_claim_rejects`` then assigns it)."""
        lt = t.lots.c
        lot = conn.execute(
            select(lt.id, lt.end_ns)
            .where(lt.asset == rule.cfg.asset, lt.kind == rule.cfg.kind, lt.end_ns >= inc.ts_ns)
            .order_by(lt.end_ns, func.length(lt.id), lt.id)
            .limit(1)
        ).first()
        stmt = upsert(conn, t.quality_results).on_conflict_do_nothing(
            index_elements=["asset", "characteristic", "ts_ns"]
        )
        inserted = conn.execute(
            stmt.returning(t.quality_results.c.id),  # rowcount is -1 here on PostgreSQL
            {
                "asset": rule.cfg.asset,
                "ts_ns": inc.ts_ns,
                "characteristic": rule.reject,
                "value": inc.delta,
                "unit": "count",
                "verdict": "fail",
                "lot_id": lot.id if lot else None,
                "source": "derived",
            },
        ).first()
        if inserted is not None:
            stats.rejects += 1
            if lot is not None:
                self._fail(conn, rule, lot.end_ns)

    @staticmethod
    def _fail(conn: Connection, rule: _Rule, end_ns: int) -> None:
        """Every lot of the rule that ended at ``end_ns`` fails: the pieces of a split, or all lots of a
        poll that saw several finish (which one was rejected is not known, so all are suspect)."""
        lt = t.lots.c
        conn.execute(
            update(t.lots)
            .where(lt.asset == rule.cfg.asset, lt.kind == rule.cfg.kind, lt.end_ns == end_ns)
            .values(verdict="fail")
        )


def _flow_order(rules: Sequence[LotRuleConfig]) -> list[LotRuleConfig]:
    """Rules with their inputs' rules first (config order otherwise; a loop keeps config order)."""
    makers = {r.asset for r in rules}
    pending = list(rules)
    done: set[str] = set()
    out: list[LotRuleConfig] = []
    while pending:
        ready = [r for r in pending if all(i in done or i not in makers or i == r.asset for i in r.inputs)]
        if not ready:  # a loop (rework back upstream): the rest in config order
            ready = pending[:1]
        for r in ready:
            out.append(r)
            pending.remove(r)
        done |= {r.asset for r in ready}
    return out


_MASS_KG = {"g": 1e-3, "kg": 1.0, "t": 1000.0}


def _unit_scale(frm: str, to: str) -> float | None:
    """Factor from an amount in ``frm`` to ``to`` (same unit, or masses); None when they don't convert."""
    if frm == to:
        return 1.0
    if frm in _MASS_KG and to in _MASS_KG:
        return _MASS_KG[frm] / _MASS_KG[to]
    return None


def _amount(
    incs: list[Increment], ts: int, prev_end: int | None, prev_mark: float | None, cursor: float | None
) -> tuple[float | None, float | None]:
    """(increase of a counter over a lot ending at ``ts``, its value at ``ts``); (None, None) if unknown.

    The value at ``ts`` is that of the latest increment at or before ``ts``, else the value before the
    first increment given, else the counter's cursor (it did not move in this feed). The value at the
    lot's start is the previous lot's mark, else (the first lot) the value before the first increment
    given. A value below the start means a counter reset: the increments' deltas since the previous lot.
    """
    first = incs[0].value - incs[0].delta if incs else cursor
    i = bisect.bisect_right([x.ts_ns for x in incs], ts) - 1
    end = incs[i].value if i >= 0 else first
    start = prev_mark if prev_mark is not None else first
    if end is None:
        end = start
    if end is None or start is None:
        return None, end
    amount = end - start
    if amount < 0:
        amount = sum(x.delta for x in incs[: i + 1] if prev_end is None or x.ts_ns > prev_end)
    return amount, end


def _order_at(conn: Connection, asset: str, ts: int) -> tuple[str | None, str | None]:
    """(order id, product) of the work order that was running on ``asset`` at ``ts``, if any."""
    wo = t.work_orders.c
    row = conn.execute(
        select(wo.id, wo.product)
        .where(
            wo.asset == asset,
            wo.actual_start_ns.is_not(None),
            wo.actual_start_ns <= ts,
            or_(wo.actual_end_ns.is_(None), wo.actual_end_ns >= ts),
        )
        .order_by(wo.actual_start_ns.desc())
        .limit(1)
    ).first()
    return (row.id, row.product) if row else (None, None)


# -- tracing ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Link:
    parent: str
    child: str
    quantity: float | None  # how much of the parent (in its unit) went into the child


@dataclass
class Trace:
    """A lot's genealogy, backward (to its origins) or forward (to its finished lots)."""

    root: str
    direction: Literal["forward", "backward"]
    nodes: list[dict[str, Any]]  # lot rows with "depth" (0: the root), by depth then end time
    edges: list[Link]
    quality: list[dict[str, Any]]  # quality_results rows of every node
    failed: list[str]  # nodes whose verdict is 'fail' or that have a failing quality result
    finished: list[str] = field(default_factory=list)  # forward: the leaves (lots nothing consumed)
    origins: list[str] = field(default_factory=list)  # backward: the roots (lots with no parent)
    energy_kwh: float | None = None  # backward: Σ energy_kwh of the root and all its ancestors
    energy_allocated_kwh: float | None = None  # backward: each ancestor's energy × its share in the root
    truncated: bool = False  # max_depth stopped the walk before its end

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["edges"] = [asdict(e) for e in self.edges]
        return d


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i : i + _CHUNK])


def trace(
    conn: Connection, lot_id: str, direction: Literal["forward", "backward"], max_depth: int = 64
) -> Trace:
    """Walk the genealogy from ``lot_id`` breadth first, one batched IN query per level; a lot reached
    twice (a merge below a split, or a cycle) is walked once, at its shallowest depth."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}")
    lt, ll = t.lots.c, t.lot_links.c
    if conn.execute(select(lt.id).where(lt.id == lot_id)).first() is None:
        raise LotNotFound(lot_id)
    backward = direction == "backward"
    near = ll.child if backward else ll.parent
    depth = {lot_id: 0}
    edges: dict[tuple[str, str], float | None] = {}
    has_next: set[str] = set()  # nodes with a link further on (not a leaf / not an origin)
    frontier, level, truncated = [lot_id], 0, False
    while frontier:
        rows = [
            row
            for chunk in _chunks(frontier)
            for row in conn.execute(select(ll.parent, ll.child, ll.quantity).where(near.in_(chunk)))
        ]
        has_next |= {row.child if backward else row.parent for row in rows}
        if level >= max_depth:
            truncated = bool(rows)
            break
        nxt: list[str] = []
        for row in rows:
            edges[(row.parent, row.child)] = row.quantity
            other = row.parent if backward else row.child
            if other not in depth:
                depth[other] = level + 1
                nxt.append(other)
        frontier, level = sorted(nxt), level + 1
    ids = list(depth)
    lots_by_id = {
        row.id: dict(row._mapping)
        for chunk in _chunks(ids)
        for row in conn.execute(select(t.lots).where(lt.id.in_(chunk)))
    }
    q = t.quality_results.c
    quality = sorted(
        (
            dict(row._mapping)
            for chunk in _chunks(ids)
            for row in conn.execute(select(t.quality_results).where(q.lot_id.in_(chunk)))
        ),
        key=lambda r: (r["ts_ns"], r["id"]),
    )
    nodes = sorted(
        ({**lots_by_id[i], "depth": d} for i, d in depth.items() if i in lots_by_id),
        key=lambda n: (n["depth"], n["end_ns"], len(n["id"]), n["id"]),
    )
    failed = {n["id"] for n in nodes if n["verdict"] == "fail"}
    failed |= {r["lot_id"] for r in quality if r["verdict"] == "fail"}
    terminal = [n["id"] for n in nodes if n["id"] not in has_next]
    out = Trace(
        root=lot_id,
        direction=direction,
        nodes=nodes,
        edges=[Link(p, c, qty) for (p, c), qty in sorted(edges.items())],
        quality=quality,
        failed=sorted(failed),
        truncated=truncated,
    )
    if backward:
        out.origins = terminal
        known = [n["energy_kwh"] for n in nodes if n["energy_kwh"] is not None]
        out.energy_kwh = sum(known) if known else None
        out.energy_allocated_kwh = _allocated_energy(lot_id, lots_by_id, edges) if known else None
    else:
        out.finished = terminal
    return out


def _allocated_energy(
    root: str, lots_by_id: Mapping[str, dict[str, Any]], edges: Mapping[tuple[str, str], float | None]
) -> float | None:
    """Σ over the root and its ancestors of energy × the share of that lot that went into the root.

    A parent's share in a child is link quantity / parent quantity (1/N for a split into N, 1 for a lot
    consumed whole); shares multiply along a path and add over paths. None when the links form a cycle.
    """
    parents_of: dict[str, list[tuple[str, float]]] = defaultdict(list)
    children_left: dict[str, int] = defaultdict(int)
    for (p, c), qty in edges.items():
        pq = lots_by_id.get(p, {}).get("quantity")
        share = qty / pq if qty is not None and pq else 1.0
        parents_of[c].append((p, share))
        children_left[p] += 1
    if children_left.get(root):
        return None  # the root is its own ancestor
    frac: dict[str, float] = defaultdict(float)
    frac[root] = 1.0
    todo, seen = deque([root]), 0
    while todo:  # children before parents (Kahn's order on the ancestor graph)
        c = todo.popleft()
        seen += 1
        for p, share in parents_of.get(c, ()):
            frac[p] += frac[c] * share
            children_left[p] -= 1
            if children_left[p] == 0:
                todo.append(p)
    if seen < len({root, *(p for p, _ in edges), *(c for _, c in edges)}):
        return None
    return sum(f * (lots_by_id[i].get("energy_kwh") or 0.0) for i, f in frac.items() if i in lots_by_id)
