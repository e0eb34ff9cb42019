"""The acquisition service: runs every configured source's connector and publishes onto the bus.

One failing source never stops the others: a connector that raises is marked failed and restarted
with backoff. Per-source health is readable in-process and published under ``<site>/_system/sources/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shopfloor.backoff import Backoff
from shopfloor.batch import SampleBatch
from shopfloor.bus import Bus
from shopfloor.config.load import validate_document
from shopfloor.config.schema import PlantConfig
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import load_yaml
from shopfloor.connector import Connector, SourceContext
from shopfloor.files import write_atomic
from shopfloor.health import SourceHealth, SourceState
from shopfloor.model import Event, EventKind, Quality, Signal, now_ns, system_asset

log = logging.getLogger("shopfloor.acquire")

ResolvedSources = dict[str, tuple[type[Connector], Any, list[Any]]]


def load_plant(path: str | Path) -> tuple[PlantConfig, ResolvedSources]:
    """The plant config and, per enabled source, its connector class, settings and tags."""
    doc = load_yaml(path)
    cfg = validate_document(doc)
    return cfg, validate_sources(cfg, doc)


class SourceSink:
    """What one source's connector emits into: counts and publishes onto the bus, never blocks.

    It remembers the newest Good source timestamp it passed on (kept on disk by the acquisition
    service as the source's *mark*). Given the mark of a previous run, the first Good data of this
    run closes the hole in between with a GAP event per asset, as a PLC outage does.
    """

    def __init__(
        self, name: str, bus: Bus, assets: Sequence[str] = (), gap_from_ns: int | None = None
    ) -> None:
        self.name = name
        self.bus = bus
        self.assets = sorted(set(assets))
        self.samples = 0
        self.events = 0
        self.newest_good_ns: int | None = None
        self.gap_from_ns = gap_from_ns

    def emit(self, batch: SampleBatch) -> None:
        self.samples += len(batch)
        self.bus.publish(batch)
        if not len(batch):
            return
        good = batch.quality == Quality.GOOD
        if not good.any():
            return
        ts = batch.ts[good]
        newest = int(ts.max())
        if self.newest_good_ns is None or newest > self.newest_good_ns:
            self.newest_good_ns = newest
        if self.gap_from_ns is not None:
            start, self.gap_from_ns = self.gap_from_ns, None
            self._record_restart_gap(start, int(ts.min()))

    def _record_restart_gap(self, from_ns: int, to_ns: int) -> None:
        if to_ns <= from_ns or not self.assets:
            return
        seconds = (to_ns - from_ns) / 1e9
        msg = f"source {self.name}: no data for {seconds:.1f} s (acquisition was not running)"
        data = {"source": self.name, "from_ns": from_ns, "to_ns": to_ns}
        self.emit_events(
            [
                Event(a, EventKind.GAP, to_ns, "acquisition_restart", msg, data=data, key=self.name)
                for a in self.assets
            ]
        )
        log.warning(
            "source %s: gap of %.1f s recorded for %d assets (acquisition was not running)",
            self.name,
            seconds,
            len(self.assets),
        )

    def emit_events(self, events: Sequence[Event]) -> None:
        self.events += len(events)
        self.bus.publish_events(events)


@dataclass
class _Running:
    name: str
    cls: type[Connector]
    settings: Any
    tags: list[Any]
    sink: SourceSink
    connector: Connector | None = None
    task: asyncio.Task[None] | None = None
    failures: int = 0
    last_error: str = ""
    carried_errors: dict[str, int] = field(default_factory=dict)
    started: bool = False


class _Crashed(Exception):
    """A started connector reported itself failed (one of its tasks crashed)."""


class Acquisition:
    """Start with ``await start()``; ``health()`` any time; ``await stop()`` drains every source.

    A service (start / stop / status): the producer of the live stream, stopped first.
    """

    name = "acquisition"

    def __init__(
        self,
        cfg: PlantConfig,
        sources: ResolvedSources,
        bus: Bus,
        *,
        state_dir: str | Path = "var/state",
        health_interval_s: float = 10.0,
        restart_initial_s: float = 1.0,
        restart_max_s: float = 60.0,
        watch_interval_s: float = 1.0,
        mark_interval_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.state_dir = Path(state_dir)
        self.health_interval_s = health_interval_s
        self.restart_initial_s, self.restart_max_s = restart_initial_s, restart_max_s
        self.watch_interval_s = watch_interval_s
        self._signals = {
            (a.path, s.name): Signal(s.name, s.unit, s.type, s.description)
            for a in cfg.assets
            for s in a.signals
        }
        self.mark_interval_s = mark_interval_s
        self.marks_file = self.state_dir / "acquisition" / "marks.json"
        self._marks = self._read_marks()  # every source's mark, those not configured now included
        self._sources = {
            name: _Running(
                name,
                cls,
                settings,
                tags,
                SourceSink(name, bus, [t.asset for t in tags], self._marks.get(name)),
            )
            for name, (cls, settings, tags) in sources.items()
        }
        self._mark_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        for run in self._sources.values():
            run.task = asyncio.create_task(self._supervise(run), name=f"source-{run.name}")
        if self.health_interval_s > 0:
            self._health_task = asyncio.create_task(self._health_loop(), name="source-health")
        if self.mark_interval_s > 0:
            self._mark_task = asyncio.create_task(self._mark_loop(), name="source-marks")

    # -- marks: the newest good source time per source, so a restart can record the hole --------
    def _read_marks(self) -> dict[str, int]:
        try:
            raw = json.loads(self.marks_file.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s (%s): no restart gaps this time", self.marks_file, exc)
            return {}

    def _changed_marks(self) -> str | None:
        """The marks file's new text, or None when no source delivered newer good data."""
        changed = False
        for name, run in self._sources.items():
            newest = run.sink.newest_good_ns
            if newest is not None and self._marks.get(name) != newest:
                self._marks[name] = newest
                changed = True
        return json.dumps(self._marks) if changed else None

    def _write_marks(self, text: str) -> None:
        try:
            write_atomic(self.marks_file, text)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.marks_file, exc)

    async def _mark_loop(self) -> None:
        while True:
            await asyncio.sleep(self.mark_interval_s)
            text = self._changed_marks()
            if text is not None:
                await asyncio.to_thread(self._write_marks, text)  # fsync: not on the event loop

    async def _supervise(self, run: _Running) -> None:
        """Start the connector and watch it; if it raises or reports a crash, restart it with backoff.

        The failure count (and the backoff) resets only after the connector ran healthy for
        ``restart_max_s``, so a crash loop backs off instead of flooding the log.
        """
        backoff = Backoff(self.restart_initial_s, self.restart_max_s, rng=random.Random(hash(run.name)))
        started_at = 0.0
        while not self._stopping:
            try:
                ctx = SourceContext(
                    name=run.name,
                    settings=run.settings,
                    tags=run.tags,
                    signals=self._signals,
                    state_dir=self.state_dir,
                    log=logging.getLogger(f"shopfloor.source.{run.name}"),
                )
                run.connector = run.cls(ctx)
                await run.connector.start(run.sink)
                run.started = True
                started_at = asyncio.get_running_loop().time()
                if run.failures:
                    log.warning("source %s: started after %d failed attempts", run.name, run.failures)
                # Watch it: a connector whose own task crashed reports state "failed"; restart it.
                while not self._stopping and run.connector.health().state != SourceState.FAILED:
                    await asyncio.sleep(self.watch_interval_s)
                if self._stopping:
                    return
                dead = run.connector.health()
                for kind, n in dead.errors.items():  # keep its error counts across the restart
                    run.carried_errors[kind] = run.carried_errors.get(kind, 0) + n
                raise _Crashed(dead.last_error or "connector failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a plugin's bug must not take the others down
                if not isinstance(exc, _Crashed):
                    run.carried_errors["start_failed"] = run.carried_errors.get("start_failed", 0) + 1
                if run.started and asyncio.get_running_loop().time() - started_at > self.restart_max_s:
                    run.failures = 0  # it had been healthy a while
                    backoff.reset()
                run.failures += 1
                run.started = False
                run.last_error = str(exc) if isinstance(exc, _Crashed) else f"{type(exc).__name__}: {exc}"
                if run.failures == 1:
                    log.error(
                        "source %s: connector failed (%s); restarting with backoff", run.name, run.last_error
                    )
                with contextlib.suppress(Exception):
                    if run.connector is not None:
                        await asyncio.wait_for(run.connector.stop(), 5)
                run.connector = None
                await asyncio.sleep(backoff.next())

    def health(self) -> dict[str, SourceHealth]:
        """Per source: the running connector's health, with the error counts and last error of
        instances that failed before it (a restarted source does not forget why it was restarted)."""
        out = {}
        for name, run in self._sources.items():
            if run.connector is not None and run.started:
                h = run.connector.health()
                errors = dict(run.carried_errors)
                for kind, n in h.errors.items():
                    errors[kind] = errors.get(kind, 0) + n
                out[name] = replace(h, errors=errors, last_error=h.last_error or run.last_error)
            else:
                out[name] = SourceHealth(
                    source=name,
                    connected=False,
                    state=SourceState.FAILED if run.failures else SourceState.STARTING,
                    last_good_ns=None,
                    last_source_ts_ns=None,
                    samples=run.sink.samples,
                    samples_per_s=0.0,
                    errors=dict(run.carried_errors),
                    last_error=run.last_error,
                )
        return out

    def health_batch(self) -> SampleBatch:
        keys: list[tuple[str, str]] = []
        values: list[float] = []
        for name, h in self.health().items():
            asset = system_asset(self.cfg.site, "sources", name)
            age = h.data_age_s
            for signal_name, v in (
                ("connected", float(h.connected)),
                ("samples", float(h.samples)),
                ("samples_per_s", h.samples_per_s),
                ("errors", float(sum(h.errors.values()))),
                ("reconnects", float(h.reconnects)),
                ("gaps", float(h.gaps)),
                ("failed_items", float(len(h.failed_items))),
                ("data_age_s", float("nan") if age is None else age),
            ):
                keys.append((asset, signal_name))
                values.append(v)
        ts = now_ns()
        quality = [Quality.BAD if v != v else Quality.GOOD for v in values]  # NaN (no data yet) is Bad
        return SampleBatch.from_columns(keys, range(len(keys)), [ts] * len(keys), values, quality)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            self.bus.publish(self.health_batch())

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every connector (each drains what it read); a stuck one is abandoned after the timeout."""
        self._stopping = True
        for task in (self._health_task, self._mark_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for run in self._sources.values():
            if run.task and not run.task.done():
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run.task

        async def stop_one(run: _Running) -> None:
            if run.connector is None:
                return
            try:
                await asyncio.wait_for(run.connector.stop(), timeout_s)
            except Exception as exc:
                log.error("source %s: stop failed: %s", run.name, exc)

        await asyncio.gather(*(stop_one(r) for r in self._sources.values()))
        text = self._changed_marks()  # after the drain: the newest data any connector emitted
        if text is not None:
            await asyncio.to_thread(self._write_marks, text)

    def status(self) -> str | None:
        return "\n".join(
            f"source {name}: {h.state}, {h.samples} samples, {h.samples_per_s:.0f}/s, errors "
            f"{h.errors or 0}, reconnects {h.reconnects}, failed items {len(h.failed_items)}"
            for name, h in self.health().items()
        )
