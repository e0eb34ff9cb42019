"""The acquisition service: runs every configured source's connector and streams into the writer.

One failing source never stops the others: a connector that raises is marked failed and restarted
with backoff. Per-source health is readable in-process and stored under ``<site>/_system/sources/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.base import Connector, SourceContext
from connectors.health import SourceHealth
from historian.factory import open_store
from historian.writer import HistorianWriter
from shopfloor.batch import SampleBatch
from shopfloor.config.load import validate_document
from shopfloor.config.schema import PlantConfig
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import load_yaml
from shopfloor.model import Event, Signal, now_ns

log = logging.getLogger("shopfloor.acquire")

ResolvedSources = dict[str, tuple[type[Connector], Any, list[Any]]]


def load_plant(path: str | Path) -> tuple[PlantConfig, ResolvedSources]:
    """The plant config and, per enabled source, its connector class, settings and tags."""
    doc = load_yaml(path)
    cfg = validate_document(doc)
    return cfg, validate_sources(cfg, doc)


class SourceSink:
    """What one source's connector emits into: counts and hands on to the writer, never blocks."""

    def __init__(self, name: str, writer: HistorianWriter) -> None:
        self.name = name
        self.writer = writer
        self.samples = 0
        self.events = 0

    def emit(self, batch: SampleBatch) -> None:
        self.samples += len(batch)
        self.writer.submit(batch)

    def emit_events(self, events: Sequence[Event]) -> None:
        self.events += len(events)
        self.writer.submit_events(events)


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


def _segment(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "_"


class Acquisition:
    """Start with ``await start()``; ``health()`` any time; ``await stop()`` drains every source."""

    def __init__(
        self,
        cfg: PlantConfig,
        sources: ResolvedSources,
        writer: HistorianWriter,
        *,
        state_dir: str | Path = "var/state",
        health_interval_s: float = 10.0,
        restart_initial_s: float = 1.0,
        restart_max_s: float = 60.0,
        watch_interval_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.writer = writer
        self.state_dir = Path(state_dir)
        self.health_interval_s = health_interval_s
        self.restart_initial_s, self.restart_max_s = restart_initial_s, restart_max_s
        self.watch_interval_s = watch_interval_s
        self._signals = {
            (a.path, s.name): Signal(s.name, s.unit, s.type, s.description)
            for a in cfg.assets
            for s in a.signals
        }
        self._sources = {
            name: _Running(name, cls, settings, tags, SourceSink(name, writer))
            for name, (cls, settings, tags) in sources.items()
        }
        self._health_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        for run in self._sources.values():
            run.task = asyncio.create_task(self._supervise(run), name=f"source-{run.name}")
        if self.health_interval_s > 0:
            self._health_task = asyncio.create_task(self._health_loop(), name="source-health")

    async def _supervise(self, run: _Running) -> None:
        """Start the connector and watch it; if it raises or reports a crash, restart it with backoff.

        The failure count (and the backoff) resets only after the connector ran healthy for
        ``restart_max_s``, so a crash loop backs off instead of flooding the log.
        """
        delay = self.restart_initial_s
        started_at = 0.0
        rng = random.Random(hash(run.name))
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
                while not self._stopping and run.connector.health().state != "failed":
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
                    run.failures, delay = 0, self.restart_initial_s  # it had been healthy a while
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
                await asyncio.sleep(delay / 2 + rng.uniform(0, delay / 2))
                delay = min(self.restart_max_s, delay * 2)

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
                    state="failed" if run.failures else "starting",
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
            asset = f"{self.cfg.site}/_system/sources/{_segment(name)}"
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
        quality = [2 if v != v else 0 for v in values]  # NaN (no data yet) is Bad
        return SampleBatch.from_columns(keys, range(len(keys)), [ts] * len(keys), values, quality)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            self.writer.submit(self.health_batch())

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every connector (each drains what it read); a stuck one is abandoned after the timeout."""
        self._stopping = True
        if self._health_task:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
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


async def run_acquire(config_path: str | Path, *, status_every_s: float = 10.0, duration_s: float = 0) -> int:
    """``shopfloor acquire``: run until SIGINT/SIGTERM (or ``duration_s``), then flush and exit."""
    cfg, sources = load_plant(config_path)
    if not sources:
        log.error("no enabled sources in %s: nothing to acquire", config_path)
        return 2
    store = open_store(cfg.historian)
    writer = HistorianWriter(
        store, cfg.historian, health_asset=f"{cfg.site}/_system/shopfloor/historian-writer"
    )
    await writer.start()
    acq = Acquisition(cfg, sources, writer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await acq.start()
    log.info("acquiring from %d sources: %s", len(sources), ", ".join(sources))
    started = loop.time()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), status_every_s)
            for name, h in acq.health().items():
                log.info(
                    "source %s: %s, %d samples, %.0f/s, errors %s, reconnects %d, failed items %d",
                    name, h.state, h.samples, h.samples_per_s, h.errors or 0, h.reconnects, len(h.failed_items),
                )  # fmt: skip
            if duration_s and loop.time() - started >= duration_s:
                break
    finally:
        log.info("stopping: draining connectors, then flushing the historian writer")
        await acq.stop()
        await writer.flush(30)
        await writer.stop()
        s = writer.stats()
        log.info(
            "stopped: produced=%d written=%d pending=%d dropped=%d",
            s.produced,
            s.written,
            s.pending,
            s.dropped_total,
        )
    return 0
