"""Quarantine: points the store refused (bad value, field type conflict), kept for the operator.

A JSON-lines file beside the spool; list, export and retry it with ``shopfloor spool quarantine``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from historian.base import Store
from historian.errors import StoreRejected
from shopfloor.batch import SampleBatch
from shopfloor.files import write_atomic
from shopfloor.model import Event, Sample, now_ns


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    at_ns: int
    reason: str
    sample: Sample | None = None
    event: Event | None = None
    seq: int = 0  # an event's number within its write (see historian.base.event_seqs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at_ns": self.at_ns, "reason": self.reason}
        if self.sample is not None:
            s = self.sample
            value = s.value if isinstance(s.value, str) or math.isfinite(s.value) else None
            out["sample"] = {
                "asset": s.asset,
                "signal": s.signal,
                "ts_ns": s.ts_ns,
                "value": value,
                "quality": int(s.quality),
            }
        if self.event is not None:
            out["event"] = self.event.to_json()
            if self.seq:
                out["seq"] = self.seq
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> QuarantineEntry:
        sample = event = None
        if "sample" in obj:
            s = obj["sample"]
            raw = s["value"]
            value: float | str = float("nan") if raw is None else raw if isinstance(raw, str) else float(raw)
            sample = Sample(s["asset"], s["signal"], value, int(s["ts_ns"]), s["quality"])
        if "event" in obj:
            event = Event.from_json(obj["event"])
        return cls(int(obj["at_ns"]), obj.get("reason", ""), sample, event, int(obj.get("seq", 0)))


class Quarantine:
    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "quarantine.jsonl"

    def add_samples(self, batch: SampleBatch, reason: str) -> None:
        at = now_ns()
        self._append([QuarantineEntry(at, reason, sample=s) for s in batch.to_samples()])

    def add_events(self, events: Sequence[Event], reason: str, seqs: Sequence[int] | None = None) -> None:
        """Keep refused events with the ``seq`` each had in its write, so a retry lands on the same identity."""
        at = now_ns()
        numbers = list(seqs) if seqs is not None else [0] * len(events)
        self._append([QuarantineEntry(at, reason, event=e, seq=n) for e, n in zip(events, numbers)])

    def _append(self, entries: list[QuarantineEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[QuarantineEntry]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        out.append(QuarantineEntry.from_json(json.loads(line)))
                    except (ValueError, KeyError):
                        continue  # a torn last line after a crash
        return out

    def __len__(self) -> int:
        return len(self.entries())

    def export(self, dest: str | Path) -> int:
        """Write the entries as a JSON array to ``dest``; returns how many."""
        entries = self.entries()
        Path(dest).write_text(json.dumps([e.to_json() for e in entries], indent=1, ensure_ascii=False))
        return len(entries)

    async def retry(self, store: Store) -> tuple[int, int]:
        """Write every entry again, one at a time; keep those still refused. Returns (written, kept)."""
        kept: list[QuarantineEntry] = []
        written = 0
        for entry in self.entries():
            try:
                if entry.sample is not None:
                    await store.write_samples(SampleBatch.from_samples([entry.sample]))
                if entry.event is not None:
                    await store.send(store.encode_events([entry.event], [entry.seq]))
                written += 1
            except StoreRejected as exc:
                kept.append(QuarantineEntry(entry.at_ns, str(exc), entry.sample, entry.event, entry.seq))
        write_atomic(self.path, "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in kept))
        return written, len(kept)
