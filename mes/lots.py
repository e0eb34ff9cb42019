"""Lots and genealogy from counter increments: every increment of a lot rule's counter closes a lot, which
consumes its inputs' waiting lots (one, each, all, or by quantity); ``trace`` walks the genealogy either way.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, func, or_, select, update

from mes import tables as t
from mes.derive import Increment
from mes.records import Bulk, upsert
from shopfloor.config.mes import LotRuleConfig, MesConfig

NS = 1_000_000_000
COUNT_UNIT = "units"  # a rule with this unit and no quantity signal counts lots: 1 per lot
MAX_LOTS_PER_INCREMENT = 1000  # a bigger jump of a lot counter is a glitch, not production
_CHUNK = 900  # ids per IN (...) query; below SQLite's and PostgreSQL's bind-parameter limits
_LOT_KEYS = (  # a new lot's row as the bulk insert takes it
    "id", "kind", "asset", "product", "order_id", "start_ns", "end_ns", "quantity", "unit",
    "energy_kwh", "qty_mark", "energy_mark", "remaining", "consumed", "verdict",
)  # fmt: skip
_PAGE = (64, 4096)  # waiting lots of an input asset read per query: the least first page, the largest

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
        self._bulks: dict[tuple[str, str], Bulk] = {}
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
        """Close the lots these increments finished, link and consume their inputs, record rejects.

        Batched: what the closes read (taken ids, previous lots, waiting inputs, orders, unclaimed
        rejects) is read in a few queries per call and kept up to date in memory while the lots are
        made in time order; what they write goes to the database in a few bulk statements at the end.
        """
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
        if events:
            run = _Run(self, conn, series, events)
            for _, _, _, rule, inc in events:
                run.close(rule, inc, stats)
            run.flush()
        for rule in self.rules:
            if rule.reject:
                for inc in series.get((rule.cfg.asset, rule.reject), ()):
                    self._reject(conn, rule, inc, stats)
        return stats

    def _bulk(self, conn: Connection, name: str) -> Bulk:
        """The insert of new lots or links, compiled once per dialect (rows as tuples)."""
        key = (conn.dialect.name, name)
        bulk = self._bulks.get(key)
        if bulk is None:
            if name == "lots":
                stmt = upsert(conn, t.lots).on_conflict_do_nothing(index_elements=["id"])
                keys: tuple[str, ...] = _LOT_KEYS
            else:
                stmt = upsert(conn, t.lot_links).on_conflict_do_nothing(index_elements=["parent", "child"])
                keys = ("parent", "child", "quantity")
            bulk = self._bulks[key] = Bulk.compile(conn, stmt, keys)
        return bulk

    def _cursor_values(self, conn: Connection) -> dict[Key, float | None]:
        wanted = {(r.cfg.asset, s) for r in self.rules for s in (r.cfg.quantity, r.energy) if s}
        if not wanted:
            return {}
        c = t.cursors.c
        rows = conn.execute(
            select(c.asset, c.signal, c.value).where(c.asset.in_(sorted({a for a, _ in wanted})))
        )
        return {(r.asset, r.signal): r.value for r in rows if (r.asset, r.signal) in wanted}

    def _reject(self, conn: Connection, rule: _Rule, inc: Increment, stats: LotStats) -> None:
        """A reject increment: a failed quality result of the first lot ending at or after it (NULL lot
        until that lot closes; the close then claims it)."""
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


@dataclass(slots=True, eq=False)
class _Lot:
    """A lot as one ``apply`` sees it: a waiting input read from the database, or a lot it made."""

    id: str
    asset: str
    end_ns: int
    quantity: float
    unit: str
    remaining: float | None
    consumed: bool = False
    row: dict[str, Any] | None = None  # a lot this apply made: the row it inserts
    touched: bool = False  # a database lot this apply consumed or drew from


def _fifo(lot: _Lot) -> tuple[int, int, str]:
    """Oldest first; at one instant n-9 before n-10 (the order the queries of mes.lots use)."""
    return (lot.end_ns, len(lot.id), lot.id)


class _Waiting:
    """The waiting (not consumed) lots of one input asset that ended by ``until``, oldest first.

    The database's are read a page at a time, only as far as a walk goes (an upstream machine may have
    weeks of lots waiting; a close takes the oldest), and merged with the lots this apply made there.
    Pages end at a whole instant, so every database lot that ended by ``loaded_to`` is in ``items``.
    """

    def __init__(self, conn: Connection, asset: str, until: int, first_page: int = 0) -> None:
        self.conn, self.asset, self.until = conn, asset, until
        self.items: list[_Lot] = []  # FIFO order from ``head`` on (before it: consumed lots)
        self.head = 0
        self.loaded_to: int | None = None
        self.complete = False
        self.page = min(max(first_page, _PAGE[0]), _PAGE[1])  # doubles with every page read

    def add(self, lot: _Lot) -> None:
        bisect.insort(self.items, lot, lo=self.head, key=_fifo)

    def walk(self, ts: int) -> Iterator[_Lot]:
        """The waiting lots that ended at or before ``ts``, oldest first (as they are when reached)."""
        items = self.items
        while self.head < len(items) and items[self.head].consumed:
            self.head += 1
        if self.head > 4096 and self.head * 2 > len(items):
            del items[: self.head]
            self.head = 0
        i = self.head
        while True:
            if not self.complete and (
                self.loaded_to is None or i >= len(items) or items[i].end_ns > self.loaded_to
            ):
                if self.loaded_to is not None and self.loaded_to >= ts:
                    return
                self._fetch()
                continue
            if i >= len(items) or items[i].end_ns > ts:
                return
            lot = items[i]
            i += 1
            if not lot.consumed:
                yield lot

    def _fetch(self) -> None:
        lt = t.lots.c
        q = select(lt.id, lt.end_ns, lt.quantity, lt.unit, lt.remaining).where(
            lt.asset == self.asset, lt.consumed.is_(False), lt.end_ns <= self.until
        )
        if self.loaded_to is not None:
            q = q.where(lt.end_ns > self.loaded_to)
        rows = list(self.conn.execute(q.order_by(lt.end_ns).limit(self.page)))
        if len(rows) < self.page:
            self.complete = True
            self.loaded_to = self.until
        else:  # the page's last instant may go on: read all of it
            last = rows[-1].end_ns
            rows = [r for r in rows if r.end_ns < last]
            rows += self.conn.execute(q.where(lt.end_ns == last))
            self.loaded_to = last
            self.page = min(2 * self.page, _PAGE[1])
        for r in rows:
            self.add(_Lot(r.id, self.asset, r.end_ns, r.quantity, r.unit, r.remaining))


class _Marks:
    """(end, quantity mark, energy mark) of one (asset, kind)'s lots around the apply's time range."""

    def __init__(self, conn: Connection, asset: str, kind: str, lo: int, hi: int) -> None:
        lt = t.lots.c
        cols = (lt.end_ns, lt.qty_mark, lt.energy_mark)
        mine = (lt.asset == asset, lt.kind == kind)
        before = conn.execute(
            select(*cols).where(*mine, lt.end_ns < lo).order_by(lt.end_ns.desc()).limit(1)
        ).all()
        inside = conn.execute(
            select(*cols).where(*mine, lt.end_ns >= lo, lt.end_ns < hi).order_by(lt.end_ns)
        ).all()
        rows = [*before, *inside]
        self.ends = [int(r.end_ns) for r in rows]
        self.marks: list[tuple[float | None, float | None]] = [(r.qty_mark, r.energy_mark) for r in rows]

    def before(self, ts: int) -> tuple[int, float | None, float | None] | None:
        """The latest lot that ended before ``ts``."""
        i = bisect.bisect_left(self.ends, ts) - 1
        return (self.ends[i], *self.marks[i]) if i >= 0 else None

    def add(self, end_ns: int, qty_mark: float | None, energy_mark: float | None) -> None:
        i = bisect.bisect_right(self.ends, end_ns)
        self.ends.insert(i, end_ns)
        self.marks.insert(i, (qty_mark, energy_mark))


class _Run:
    """One ``LotMaker.apply``: the closes in time order against an in-memory view of what they read,
    then one flush of what they wrote (see ``LotMaker.apply``)."""

    def __init__(
        self,
        maker: LotMaker,
        conn: Connection,
        series: Mapping[Key, list[Increment]],
        events: Sequence[tuple[int, int, float, _Rule, Increment]],
    ) -> None:
        self.maker, self.conn, self.series = maker, conn, series
        self.stamps = {k: [x.ts_ns for x in incs] for k, incs in series.items()}
        self.lo, self.hi = events[0][0], events[-1][0]
        self._cursor: dict[Key, float | None] | None = None
        self.ids: dict[str, tuple[str, int] | None] = self._taken_ids(events)
        self.marks: dict[tuple[str, str], _Marks] = {}
        takes: dict[str, int] = defaultdict(int)  # lots the closes may take one by one, per input
        for _, _, _, rule, inc in events:
            if rule.cfg.consume in ("one", "each"):
                for a in rule.cfg.inputs:
                    takes[a] += max(1, round(inc.delta)) * rule.cfg.pieces
        self.waiting = {
            a: _Waiting(conn, a, self.hi, takes.get(a, 0) + 1) for r in maker.rules for a in r.cfg.inputs
        }
        self.orders = self._orders({rule.cfg.asset for _, _, _, rule, _ in events})
        self.unclaimed: dict[Key, tuple[list[int], list[int]]] = {}  # (asset, reject) -> (ts, ids)
        self.new: list[_Lot] = []
        self.new_at: dict[tuple[str, str, int], list[_Lot]] = defaultdict(list)  # (asset, kind, end)
        self.links: list[tuple[str, str, float]] = []  # (parent, child, quantity)
        self.claims: list[dict[str, Any]] = []  # quality result id -> lot id
        self.failed: list[dict[str, Any]] = []  # (asset, kind, end) of database lots that fail
        self.touched: list[_Lot] = []  # database lots consumed or drawn from

    # -- what the closes read ------------------------------------------------------------------
    def cursor_value(self, key: Key) -> float | None:
        """The counter's last value before this feed, read only when the feed has no increment of it."""
        if key in self.series:
            return None  # not used: _amount starts from the feed's first increment
        if self._cursor is None:
            self._cursor = self.maker._cursor_values(self.conn)
        return self._cursor.get(key)

    def _taken_ids(
        self, events: Sequence[tuple[int, int, float, _Rule, Increment]]
    ) -> dict[str, tuple[str, int] | None]:
        """Asset and end of the lots holding the ids the closes will try; None: free. First every
        ``{prefix}-{n}``, then the fallbacks of those that are taken by another lot or wanted twice (a
        counter reset); any other id is looked up when a close needs it."""
        wanted: list[tuple[str, str, int, _Rule]] = []  # (id tried first, base, ts, rule)
        for _, _, _, rule, inc in events:
            k = max(1, round(inc.delta))
            if k > self.maker.max_lots_per_increment:
                continue
            v = round(inc.value)
            suffix = "" if rule.cfg.pieces == 1 else ".1"
            for n in range(v - k + 1, v + 1):
                base = f"{rule.prefix}-{n}"
                wanted.append((base + suffix, base, inc.ts_ns, rule))
        ids: dict[str, tuple[str, int] | None] = {}
        twice: set[str] = set()
        for first, _, _, _ in wanted:
            if first in ids:
                twice.add(first)
            ids[first] = None
        self._look_up(ids, list(ids))
        more: dict[str, None] = {}
        for first, base, ts, rule in wanted:
            held = ids[first]
            if first in twice or (held is not None and held != (rule.cfg.asset, ts)):
                suffix = "" if rule.cfg.pieces == 1 else ".1"
                for cand in (f"{base}@{_stamp(ts)}", f"{base}@{ts}"):
                    if cand + suffix not in ids:
                        more[cand + suffix] = None
        if more:
            ids.update(more)
            self._look_up(ids, list(more))
        return ids

    def _look_up(self, ids: dict[str, tuple[str, int] | None], wanted: list[str]) -> None:
        lt = t.lots.c
        for chunk in _chunks(wanted):
            for r in self.conn.execute(select(lt.id, lt.asset, lt.end_ns).where(lt.id.in_(chunk))):
                ids[r.id] = (r.asset, r.end_ns)

    def _holder(self, lot_id: str) -> tuple[str, int] | None:
        if lot_id not in self.ids:
            self.ids[lot_id] = None
            self._look_up(self.ids, [lot_id])
        return self.ids[lot_id]

    def _base_id(self, rule: _Rule, n: int, ts: int) -> str | None:
        """The id of lot ``n`` closed at ``ts`` (before any piece suffix); None when it exists (a replay).

        ``{prefix}-{n}``; when a counter reset made that id an older lot's, ``{prefix}-{n}@{UTC time}``.
        """
        base = f"{rule.prefix}-{n}"
        for cand in (base, None, f"{base}@{ts}"):
            if cand is None:
                cand = f"{base}@{_stamp(ts)}"
            first = cand if rule.cfg.pieces == 1 else f"{cand}.1"
            row = self._holder(first)
            if row is None:
                return cand
            if row[0] == rule.cfg.asset and row[1] == ts:
                return None
        raise ValueError(f"lot ids {base}, {base}@{_stamp(ts)} and {base}@{ts} are all taken by other lots")

    def _marks_of(self, rule: _Rule) -> _Marks:
        key = (rule.cfg.asset, rule.cfg.kind)
        marks = self.marks.get(key)
        if marks is None:
            marks = self.marks[key] = _Marks(self.conn, *key, self.lo, self.hi)
        return marks

    def _orders(self, assets: set[str]) -> dict[str, list[tuple[int, int | None, str, str]]]:
        """The work orders that ran on ``assets`` during the apply's time range: (start, end, id, product)."""
        wo = t.work_orders.c
        rows = self.conn.execute(
            select(wo.id, wo.product, wo.asset, wo.actual_start_ns, wo.actual_end_ns)
            .where(
                wo.asset.in_(sorted(assets)),
                wo.actual_start_ns.is_not(None),
                wo.actual_start_ns <= self.hi,
                or_(wo.actual_end_ns.is_(None), wo.actual_end_ns >= self.lo),
            )
            .order_by(wo.actual_start_ns, wo.id)
        )
        out: dict[str, list[tuple[int, int | None, str, str]]] = defaultdict(list)
        for r in rows:
            out[r.asset].append((r.actual_start_ns, r.actual_end_ns, r.id, r.product))
        return out

    def _order_at(self, asset: str, ts: int) -> tuple[str | None, str | None]:
        """(order id, product) of the work order that was running on ``asset`` at ``ts``, if any: the
        latest started of those started by then and not ended before."""
        best: tuple[int, int | None, str, str] | None = None
        for o in self.orders.get(asset, ()):
            if o[0] > ts:
                break
            if (o[1] is None or o[1] >= ts) and (best is None or o[0] > best[0]):
                best = o
        return (best[2], best[3]) if best else (None, None)

    # -- closing a lot -------------------------------------------------------------------------
    def close(self, rule: _Rule, inc: Increment, stats: LotStats) -> None:
        r = rule.cfg
        ts = inc.ts_ns
        k = max(1, round(inc.delta))
        if k > self.maker.max_lots_per_increment:
            stats.refused += 1
            return
        v = round(inc.value)
        bases = [b for n in range(v - k + 1, v + 1) if (b := self._base_id(rule, n, ts)) is not None]
        stats.replayed += k - len(bases)
        if not bases:
            return
        marks = self._marks_of(rule)  # read before this close adds its lots
        prev = marks.before(ts)
        prev_end = prev[0] if prev else None
        n_lots = k * r.pieces
        qty_mark: float | None = None
        if r.quantity:
            key = (r.asset, r.quantity)
            amount, qty_mark = _amount(
                self.series.get(key, []),
                ts,
                prev_end,
                prev[1] if prev else None,
                self.cursor_value(key),
                self.stamps.get(key, []),
            )
            counted_qty: float | None = (amount or 0.0) / n_lots
        else:
            counted_qty = None
        energy: float | None = None
        energy_mark: float | None = None
        if rule.energy:
            key = (r.asset, rule.energy)
            e_amount, energy_mark = _amount(
                self.series.get(key, []),
                ts,
                prev_end,
                prev[2] if prev else None,
                self.cursor_value(key),
                self.stamps.get(key, []),
            )
            energy = None if e_amount is None else e_amount / n_lots
        order_id, product = self._order_at(r.asset, ts)
        waiting = self.waiting.get(r.asset)
        for base in bases:
            ids = [base] if r.pieces == 1 else [f"{base}.{i}" for i in range(1, r.pieces + 1)]
            if r.consume == "quantity":
                need = (counted_qty or 0.0) * len(ids)
                parents = self._draw_inputs(rule, ts, stats, len(ids), need)
            else:
                parents = self._take_inputs(rule, ts, stats, len(ids))
            quantity = counted_qty
            if quantity is None:
                units = {p["unit"] for p in parents}
                inherit = bool(parents) and r.quantity_unit != COUNT_UNIT and units == {r.quantity_unit}
                quantity = sum(p["quantity"] for p in parents) / r.pieces if inherit else 1.0
            for lot_id in ids:
                row = {
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
                lot = _Lot(lot_id, r.asset, ts, quantity, r.quantity_unit, quantity, row=row)
                self.new.append(lot)
                self.new_at[(r.asset, r.kind, ts)].append(lot)
                self.ids[lot_id] = (r.asset, ts)
                if waiting is not None:
                    waiting.add(lot)
            marks.add(ts, qty_mark, energy_mark)
            stats.lots += len(ids)
            links = [(p["id"], c, p.get("drawn", p["quantity"]) / len(ids)) for p in parents for c in ids]
            self.links += links
            stats.links += len(links)
        if rule.reject:
            self._claim_rejects(rule, bases[0] if r.pieces == 1 else f"{bases[0]}.1", prev_end, ts)

    def _take_inputs(self, rule: _Rule, ts: int, stats: LotStats, n_children: int) -> list[dict[str, Any]]:
        """Waiting lots of the input assets that ended at or before ``ts``, marked consumed: the oldest of
        them all ('one': parallel machines feeding one station), the oldest of each input ('each': an
        assembly of different parts) or every one ('all': a merge)."""
        r = rule.cfg
        if not r.inputs:
            return []
        taken: list[_Lot] = []
        found = 0
        if r.consume == "one":
            heads = [h for src in dict.fromkeys(r.inputs) if (h := next(self.waiting[src].walk(ts), None))]
            if heads:
                taken = [min(heads, key=_fifo)]
            found = len(r.inputs) if taken else 0
        else:
            for src in r.inputs:  # what each input has waiting, as the database had it before this take
                walk = self.waiting[src].walk(ts)
                got = [x for x in ([next(walk, None)] if r.consume == "each" else walk) if x is not None]
                found += bool(got)
                taken += got
        for lot in taken:
            self._touch(lot, consumed=True)
        stats.consumed += len(taken)
        if not found:
            stats.untraced += n_children
        elif found < len(r.inputs):
            stats.partial += n_children
        return [{"id": x.id, "quantity": x.quantity, "unit": x.unit} for x in taken]

    def _draw_inputs(
        self, rule: _Rule, ts: int, stats: LotStats, n_children: int, need: float
    ) -> list[dict[str, Any]]:
        """'quantity' mode: draw ``need`` (in this rule's unit) from the waiting input lots oldest first;
        a lot drawn to nothing is consumed. Each parent carries what was drawn from it, in its own unit."""
        r = rule.cfg
        parents: list[dict[str, Any]] = []
        left = need
        for src in r.inputs:
            if left <= 1e-9:
                break
            for lot in self.waiting[src].walk(ts):  # lazily: weeks of melts may be waiting
                if left <= 1e-9:
                    break
                scale = _unit_scale(r.quantity_unit, lot.unit)  # this rule's unit -> the parent's
                if scale is None:
                    continue
                have = lot.remaining if lot.remaining is not None else lot.quantity
                take = min(have, left * scale)
                if take <= 0:
                    continue
                rest = have - take
                gone = rest <= 1e-9 * max(1.0, lot.quantity)
                lot.remaining = 0.0 if gone else rest
                self._touch(lot, consumed=gone)
                stats.consumed += gone
                left -= take / scale
                parents.append({"id": lot.id, "quantity": lot.quantity, "unit": lot.unit, "drawn": take})
        if not parents:
            stats.untraced += n_children
        elif left > 1e-9 * max(1.0, need):
            stats.partial += n_children  # made of more than was waiting upstream (a melt not yet tapped)
        return parents

    def _touch(self, lot: _Lot, consumed: bool) -> None:
        lot.consumed = lot.consumed or consumed
        if lot.row is None and not lot.touched:
            lot.touched = True
            self.touched.append(lot)

    def _claim_rejects(self, rule: _Rule, lot_id: str, prev_end: int | None, ts: int) -> None:
        """Rejects recorded before this lot closed (in its interval) are its; the lot fails."""
        assert rule.reject is not None
        key = (rule.cfg.asset, rule.reject)
        got = self.unclaimed.get(key)
        if got is None:
            q = t.quality_results.c
            rows = self.conn.execute(
                select(q.id, q.ts_ns)
                .where(
                    q.asset == rule.cfg.asset,
                    q.characteristic == rule.reject,
                    q.source == "derived",
                    q.lot_id.is_(None),
                    q.ts_ns <= self.hi,
                )
                .order_by(q.ts_ns, q.id)
            ).all()
            got = self.unclaimed[key] = ([int(x.ts_ns) for x in rows], [int(x.id) for x in rows])
        stamps, ids = got
        a = 0 if prev_end is None else bisect.bisect_right(stamps, prev_end)
        b = bisect.bisect_right(stamps, ts)
        if b <= a:
            return
        self.claims += [{"b_id": i, "b_lot": lot_id} for i in ids[a:b]]
        del stamps[a:b], ids[a:b]
        for lot in self.new_at.get((rule.cfg.asset, rule.cfg.kind, ts), ()):
            if lot.row is not None:
                lot.row["verdict"] = "fail"
        self.failed.append({"b_asset": rule.cfg.asset, "b_kind": rule.cfg.kind, "b_end": ts})

    # -- writing -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what the closes did: failed and consumed database lots, new lots, links, claims."""
        conn, lots = self.conn, t.lots
        lt = lots.c
        if self.failed:  # the database's lots of that instant (this apply's lots carry their verdict)
            conn.execute(
                update(lots)
                .where(
                    lt.asset == bindparam("b_asset"),
                    lt.kind == bindparam("b_kind"),
                    lt.end_ns == bindparam("b_end"),
                )
                .values(verdict="fail"),
                self.failed,
            )
        touched = [{"b_id": x.id, "b_remaining": x.remaining, "b_consumed": x.consumed} for x in self.touched]
        if touched:
            conn.execute(
                update(lots)
                .where(lt.id == bindparam("b_id"))
                .values(remaining=bindparam("b_remaining"), consumed=bindparam("b_consumed")),
                touched,
            )
        if self.new:
            rows = []
            for x in self.new:
                row = x.row
                assert row is not None
                row["consumed"], row["remaining"] = x.consumed, x.remaining
                rows.append(tuple([row[k] for k in _LOT_KEYS]))
            self.maker._bulk(conn, "lots").run(conn, rows)
        if self.links:
            self.maker._bulk(conn, "links").run(conn, self.links)
        if self.claims:
            q = t.quality_results
            conn.execute(
                update(q).where(q.c.id == bindparam("b_id")).values(lot_id=bindparam("b_lot")),
                self.claims,
            )


def _stamp(ts: int) -> str:
    """UTC second of ``ts`` as in lot ids: 20260101T000140Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts // NS))


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
    incs: list[Increment],
    ts: int,
    prev_end: int | None,
    prev_mark: float | None,
    cursor: float | None,
    stamps: Sequence[int] | None = None,
) -> tuple[float | None, float | None]:
    """(increase of a counter over a lot ending at ``ts``, its value at ``ts``); (None, None) if unknown.

    The value at ``ts`` is that of the latest increment at or before ``ts``, else the value before the
    first increment given, else the counter's cursor (it did not move in this feed). The value at the
    lot's start is the previous lot's mark, else (the first lot) the value before the first increment
    given. A value below the start means a counter reset: the increments' deltas since the previous lot.
    ``stamps`` are the increments' times (computed once per apply).
    """
    first = incs[0].value - incs[0].delta if incs else cursor
    i = bisect.bisect_right(stamps if stamps is not None else [x.ts_ns for x in incs], ts) - 1
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
