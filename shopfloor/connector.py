"""The connector API: what a driver declares (ConnectorSpec), receives (SourceContext) and does.

A connector validates nothing itself: its settings and tag models are checked before it starts.
It calls ``sink.emit(batch)`` (never blocks) from ``start()`` until ``stop()`` has drained.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from shopfloor.batch import SampleBatch
from shopfloor.health import HealthTracker, SourceHealth
from shopfloor.model import Event, Signal

API_VERSION = 1


class TagBase(BaseModel):
    """Every tag names the asset and signal it feeds; connectors add their address keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    asset: str
    signal: str


class SettingsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=BaseModel)
T = TypeVar("T", bound=TagBase)


Loc = tuple[int | str, ...]
CrossCheck = Callable[[Any, Sequence[Any]], list[tuple[Loc, str]]]


@dataclass(frozen=True)
class ConnectorSpec:
    """What a connector is: its name in config, its config models and the API it was built for.

    ``check(settings, tags)`` is optional: cross-field rules (a tag naming a group the settings do
    not define, …) returned as (location within the source, message), e.g. (("tags", 3, "group"),
    "…"), so config validation reports them at file:line like any other error.
    """

    name: str
    settings_model: type[BaseModel]
    tag_model: type[TagBase]
    api_version: int = API_VERSION
    description: str = ""
    check: CrossCheck | None = None


class Sink(Protocol):
    """Where a connector hands its data. Both calls return at once; neither ever blocks."""

    def emit(self, batch: SampleBatch) -> None: ...

    def emit_events(self, events: Sequence[Event]) -> None: ...


@dataclass
class SourceContext(Generic[S, T]):
    """Everything a connector instance gets: its validated config and a place to keep state."""

    name: str
    settings: S
    tags: list[T]
    signals: dict[tuple[str, str], Signal] = field(default_factory=dict)  # (asset, signal) -> Signal
    state_dir: Path = Path("var/state")  # per-source files (certificates, cursors); created on demand
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("shopfloor.source"))

    def source_dir(self) -> Path:
        path = self.state_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path


class Connector(ABC, Generic[S, T]):
    """Base class of every connector (built-in or plugin).

    Life cycle: ``__init__(ctx)`` (no I/O) → ``await start(sink)`` → ... → ``await stop()``.
    ``start`` returns once acquisition is running (background tasks are the connector's own) and
    must not raise because a device is unreachable: it reports that in ``health()`` and retries.
    ``stop`` returns only after every batch read so far was emitted; it is idempotent.
    """

    spec: ClassVar[ConnectorSpec]

    def __init__(self, ctx: SourceContext[S, T]) -> None:
        self.ctx = ctx
        self.tracker = HealthTracker(ctx.name, ctx.log)

    @abstractmethod
    async def start(self, sink: Sink) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    def health(self) -> SourceHealth:
        return self.tracker.snapshot()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a background task whose crash is reported, not lost.

        If the task ends with an exception (a bug in a poll loop), the source is marked failed in
        ``health()``; the acquisition service then restarts the connector with backoff.
        """
        task = asyncio.create_task(coro, name=name)

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                self.tracker.on_crashed(f"task {name} crashed: {type(exc).__name__}: {exc}", exc)

        task.add_done_callback(done)
        return task

    def describe(self) -> dict[str, Any]:
        """Free-form details for ``shopfloor acquire --status`` (optional)."""
        return {}
