"""The addresses a Modbus device refuses inside a merged read (exception 02): found by bisection, read around.
Owns each polling group's split plan, the refused tags' health (failed items), their periodic re-read and its log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from connectors.modbus.config import ModbusTag
from connectors.modbus.frames import ILLEGAL_ADDRESS, ReadFailure, exception_text
from connectors.modbus.poll_plan import GroupItems
from connectors.modbus.read_plan import Item, Request
from shopfloor.health import HealthTracker

Read = Callable[[Request], Awaitable[None]]  # one read outside the plan; raises ReadFailure (already counted)


def where(req: Request) -> str:
    """``unit 10 holding 82..83``."""
    return f"unit {req.unit_id} {req.table} {req.address}..{req.address + req.count - 1}"


def tag_id(t: ModbusTag) -> str:
    """The id of a tag in ``health().failed_items``: ``asset:signal``."""
    return f"{t.asset}:{t.signal}"


def atoms(req: Request, items: Sequence[Item]) -> list[list[int]]:
    """The items of ``req`` in address order, grouped where they share registers (those are read together)."""
    out: list[list[int]] = []
    end = -1
    for i, _ in sorted(req.items, key=lambda io: (items[io[0]].address, -items[io[0]].size)):
        a, n = items[i].address, items[i].size
        if out and a < end:
            out[-1].append(i)
            end = max(end, a + n)
        else:
            out.append([i])
            end = a + n
    return out


def span(unit_id: int, table: str, members: Sequence[int], items: Sequence[Item]) -> Request:
    """The one request that covers ``members`` (item indexes) and nothing beyond them."""
    start = min(items[i].address for i in members)
    end = max(items[i].address + items[i].size for i in members)
    return Request(unit_id, table, start, end - start, tuple((i, items[i].address - start) for i in members))


class _Inconclusive(Exception):
    """A read of the search failed for another reason than exception 02: nothing can be concluded."""

    def __init__(self, failure: ReadFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass
class _Split:
    parts: list[Request]  # what answers, polled instead of the planned request
    refused: dict[Request, str] = field(default_factory=dict)  # refused range -> reason; not polled


class RefusedRanges:
    """The split plan of one polling group: which planned requests were split, and into what.

    A merged request reads every register between its first and last tag, so one address the device
    does not serve (a tag past its map, or an unused register the planner read to merge two requests)
    makes the whole request fail, and with it every tag in it. Such a request is bisected, as the
    historian writer bisects a refused batch: halves are read until each refused range is alone, and
    adjacent parts that answered are joined again. From then on the parts are polled, the refused
    ranges are not sent (their tags are Bad, listed as failed items) and are re-read every
    ``refused_retry_s``; once nothing in it is refused, the planned request is polled again.
    """

    def __init__(
        self,
        source: str,
        planned: Sequence[Request],
        group_items: GroupItems,
        tracker: HealthTracker,
        log: logging.Logger,
        retry_s: float,
    ) -> None:
        self.source, self.planned, self.gi = source, list(planned), group_items
        self.tracker, self.log, self.retry_s = tracker, log, retry_s
        self.splits: dict[int, _Split] = {}  # index of a planned request -> how it is read instead
        self.searches = 0  # reads made to isolate refused ranges
        self._origin: dict[Request, int] = {r: o for o, r in enumerate(self.planned)}
        self._failed: dict[str, str] = {}  # tag id -> reason, as last reported

    @property
    def active(self) -> bool:
        return bool(self.splits)

    def plan(self) -> tuple[list[Request], list[bool]]:
        """The requests to build the group from, and which of them are refused (not sent)."""
        requests: list[Request] = []
        refused: list[bool] = []
        for o, r in enumerate(self.planned):
            sp = self.splits.get(o)
            if sp is None:
                requests.append(r)
                refused.append(False)
                continue
            for q in sorted([*sp.parts, *sp.refused], key=lambda q: q.address):
                requests.append(q)
                refused.append(q in sp.refused)
        return requests, refused

    def refused(self) -> dict[str, list[str]]:
        """Refused range -> the tags it holds (for describe())."""
        return {
            where(r): sorted({tag_id(self.gi.owner[i][0]) for i, _ in r.items})
            for sp in self.splits.values()
            for r in sp.refused
        }

    # -- isolating ---------------------------------------------------------------------------------
    async def isolate(self, req: Request, failure: ReadFailure, read: Read) -> ReadFailure | None:
        """``req`` (a request of the current plan) answered exception 02: find what in it is refused.

        Returns None once the plan has changed (call :meth:`plan`), or the failure that stopped the
        search (a timeout, a lost connection: then nothing changes and a later 02 searches again).
        """
        o = self._origin[req]
        try:
            parts, refused = await self._search(req, atoms(req, self.gi.items), failure, read)
            parts = await self._coalesce(req, parts, read)
        except _Inconclusive as exc:
            return exc.failure
        sp = self.splits.setdefault(o, _Split([self.planned[o]]))
        sp.parts.remove(req)
        sp.parts += parts
        sp.refused.update(refused)
        self._log_split(req, parts, [r for r, _ in refused])
        self._changed()
        return None

    async def _search(
        self, req: Request, group: list[list[int]], known: ReadFailure | None, read: Read
    ) -> tuple[list[Request], list[tuple[Request, str]]]:
        """Bisect ``group`` (atoms of ``req``): the parts that answer and the refused ranges with reasons."""
        sub = span(req.unit_id, req.table, [i for a in group for i in a], self.gi.items)
        if known is None:
            self.searches += 1
            try:
                await read(sub)
                return [sub], []
            except ReadFailure as f:
                if f.kind != ILLEGAL_ADDRESS:
                    raise _Inconclusive(f) from None
        if len(group) == 1:
            return [], [(sub, f"{exception_text(2)}: {where(sub)} refused")]
        mid = len(group) // 2
        parts_a, refused_a = await self._search(req, group[:mid], None, read)
        parts_b, refused_b = await self._search(req, group[mid:], None, read)
        return parts_a + parts_b, refused_a + refused_b

    async def _coalesce(self, req: Request, parts: list[Request], read: Read) -> list[Request]:
        """Join each run of adjacent parts into one request if the device answers it (one read per run).

        Adjacent parts hold only registers that answered, so the join usually answers too; if it does
        not (a device that limits the request length, say), the parts stay as they are.
        """
        out: list[Request] = []
        run: list[Request] = []
        for part in [*sorted(parts, key=lambda r: r.address), None]:
            if part is not None and run and run[-1].address + run[-1].count == part.address:
                run.append(part)
                continue
            if len(run) > 1:
                joined = span(req.unit_id, req.table, [i for r in run for i, _ in r.items], self.gi.items)
                self.searches += 1
                try:
                    await read(joined)
                    run = [joined]
                except ReadFailure as f:
                    if f.kind != ILLEGAL_ADDRESS:
                        raise _Inconclusive(f) from None
            out += run
            run = [part] if part is not None else []
        return out

    # -- re-reading --------------------------------------------------------------------------------
    async def retry(self, read: Read) -> bool:
        """Re-read every refused range; one that answers is polled again. True if the plan changed.

        When nothing of a split request is refused any more (its ranges answer, or only unused
        registers were refused), the planned request is tried again and, if it answers, polled again.
        """
        changed = False
        for o, sp in list(self.splits.items()):
            for r in list(sp.refused):
                try:
                    await read(r)
                except ReadFailure as f:
                    if f.ends_poll:
                        return self._after_retry(changed)
                    continue
                del sp.refused[r]
                sp.parts.append(r)
                changed = True
            if sp.refused:
                continue
            try:
                await read(self.planned[o])
            except ReadFailure as f:
                if f.ends_poll:
                    return self._after_retry(changed)
                continue
            del self.splits[o]
            changed = True
            self.log.info(
                "source %s: %s answers again; it is read as one request again",
                self.source,
                where(self.planned[o]),
            )
        return self._after_retry(changed)

    def _after_retry(self, changed: bool) -> bool:
        if changed:
            self._changed()
        return changed

    def _changed(self) -> None:
        """After the plan changed: which planned request each current request stands for, and health."""
        self._origin = {r: o for o, r in enumerate(self.planned)}
        for o, sp in self.splits.items():
            self._origin.update(dict.fromkeys([*sp.parts, *sp.refused], o))
        self._report_items()

    # -- health and log ----------------------------------------------------------------------------
    def _report_items(self) -> None:
        """Failed items = tags of refused ranges; reported when the set or a reason changes, never per poll."""
        now: dict[str, str] = {}
        for sp in self.splits.values():
            for r, reason in sp.refused.items():
                for i, _ in r.items:
                    t, is_status = self.gi.owner[i]
                    why = (
                        f"status register: {reason} (values read, quality Uncertain)" if is_status else reason
                    )
                    if not is_status or tag_id(t) not in now:  # the value's own refusal wins
                        now[tag_id(t)] = why
        for k in sorted(set(self._failed) - set(now)):
            self.tracker.on_item_restored(k)  # logged once by the tracker
        for k, v in sorted(now.items()):
            if self._failed.get(k) != v:
                self.tracker.on_item_failed(k, v)  # counted and logged once by the tracker
        self._failed = now

    def _log_split(self, req: Request, parts: list[Request], refused: list[Request]) -> None:
        names = [
            f"{r.table} {r.address}..{r.address + r.count - 1} "
            f"({', '.join(sorted({tag_id(self.gi.owner[i][0]) for i, _ in r.items}))})"
            for r in refused
        ]
        what = ", ".join(names) or (
            "no tag (only unused registers read to merge requests; lower gap_fill_registers/gap_fill_bits "
            "to leave them out)"
        )
        self.log.warning(
            "source %s: %s answered %s; refused: %s; the rest is now read as %d request%s%s",
            self.source,
            where(req),
            exception_text(2),
            what,
            len(parts),
            "" if len(parts) == 1 else "s",
            f", refused ranges re-read every {self.retry_s:g} s" if refused else "",
        )
