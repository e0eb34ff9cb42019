"""The connector contract: a reusable pytest suite an integrator runs against their own connector.

Subclass ``ConnectorContract`` in a test module, say how to build a working source, and pytest
checks the behaviour Shopfloor relies on (spec, start/stop, draining, emitted data, config errors).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from shopfloor.batch import SampleBatch
from shopfloor.config import ConfigError, parse_plant_config
from shopfloor.config.sources import validate_sources
from shopfloor.config.yaml_source import parse_yaml
from shopfloor.connector import API_VERSION, Connector, ConnectorSpec, SourceContext
from shopfloor.health import SourceHealth
from shopfloor.model import Event, Signal


class RecordingSink:
    """A sink that keeps what it is given, with the wall time of each call."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, SampleBatch]] = []
        self.events: list[tuple[float, Event]] = []

    def emit(self, batch: SampleBatch) -> None:
        self.batches.append((time.monotonic(), batch))

    def emit_events(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        self.events.extend((now, e) for e in events)

    @property
    def samples(self) -> int:
        return sum(len(b) for _, b in self.batches)


class ConnectorContract:
    """Subclass and set the class attributes; every ``test_*`` here then runs against your connector.

    Required: ``connector_name`` (as registered in the ``shopfloor.connectors`` entry-point group)
    and ``source_yaml`` — a plant config (YAML text) with one enabled source of your connector whose
    device is reachable while the test runs (start it in ``setup_device`` if it needs a server).
    Optional: ``bad_settings`` — a list of (settings mapping, expected key) that must be refused.
    """

    connector_name: ClassVar[str] = ""
    source_yaml: ClassVar[str] = ""
    bad_settings: ClassVar[list[tuple[dict[str, Any], str]]] = []
    data_timeout_s: ClassVar[float] = 10.0
    stop_timeout_s: ClassVar[float] = 10.0

    # -- hooks ---------------------------------------------------------------------------------
    def setup_device(self, tmp_path: Path) -> None:
        """Start whatever the source reads (a simulator, a file). Default: nothing."""

    def teardown_device(self) -> None:
        """Stop what ``setup_device`` started."""

    # -- helpers -------------------------------------------------------------------------------
    def _yaml(self, tmp_path: Path) -> str:
        return self.source_yaml.replace("{tmp}", str(tmp_path))

    def build(self, tmp_path: Path) -> Connector:
        text = self._yaml(tmp_path)
        doc = parse_yaml(text, "contract.yaml")
        cfg = parse_plant_config(text, "contract.yaml")
        resolved = validate_sources(cfg, doc)
        assert len(resolved) == 1, "source_yaml must have exactly one enabled source"
        ((name, (cls, settings, tags)),) = resolved.items()
        signals = {(a.path, s.name): Signal(s.name, s.unit, s.type) for a in cfg.assets for s in a.signals}
        ctx = SourceContext(
            name=name, settings=settings, tags=tags, signals=signals, state_dir=tmp_path / "state"
        )
        return cls(ctx)

    @pytest.fixture
    def device(self, tmp_path: Path) -> Iterator[Path]:
        self.setup_device(tmp_path)
        yield tmp_path
        self.teardown_device()

    async def _wait_for_data(self, sink: RecordingSink) -> None:
        deadline = time.monotonic() + self.data_timeout_s
        while sink.samples == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    # -- the contract --------------------------------------------------------------------------
    def test_spec_is_registered_and_speaks_this_api(self) -> None:
        from shopfloor.plugins import load

        cls = load(self.connector_name)
        assert issubclass(cls, Connector)
        assert isinstance(cls.spec, ConnectorSpec)
        assert cls.spec.name == self.connector_name
        assert cls.spec.api_version == API_VERSION

    @pytest.mark.asyncio
    async def test_start_emits_valid_batches_and_stop_drains(self, device: Path) -> None:
        conn = self.build(device)
        sink = RecordingSink()
        await asyncio.wait_for(conn.start(sink), self.data_timeout_s)
        await self._wait_for_data(sink)
        await asyncio.wait_for(conn.stop(), self.stop_timeout_s)
        stopped_at = time.monotonic()
        assert sink.samples > 0, "no samples emitted within data_timeout_s"
        configured = {(t.asset, t.signal) for t in conn.ctx.tags}
        for _, batch in sink.batches:
            assert isinstance(batch, SampleBatch)
            assert set(batch.keys) <= configured, (
                f"emitted series not in the config: {set(batch.keys) - configured}"
            )
            assert batch.ts.dtype == np.int64 and bool((batch.ts > 946_684_800 * 10**9).all()), (
                "timestamps must be UTC ns"
            )
            assert set(np.unique(batch.quality).tolist()) <= {0, 1, 2}
        count = len(sink.batches)
        await asyncio.sleep(0.5)
        assert len(sink.batches) == count, "emitted after stop() returned"
        assert all(t <= stopped_at for t, _ in sink.batches)

    @pytest.mark.asyncio
    async def test_stop_is_idempotent_and_safe_before_start(self, device: Path) -> None:
        conn = self.build(device)
        await asyncio.wait_for(conn.stop(), self.stop_timeout_s)  # never started
        conn = self.build(device)
        await asyncio.wait_for(conn.start(RecordingSink()), self.data_timeout_s)
        await asyncio.wait_for(conn.stop(), self.stop_timeout_s)
        await asyncio.wait_for(conn.stop(), self.stop_timeout_s)

    @pytest.mark.asyncio
    async def test_health_reports_samples(self, device: Path) -> None:
        conn = self.build(device)
        sink = RecordingSink()
        await conn.start(sink)
        await self._wait_for_data(sink)
        health = conn.health()
        await conn.stop()
        assert isinstance(health, SourceHealth)
        assert health.samples > 0 and health.last_good_ns is not None

    def test_bad_settings_give_located_errors(self, tmp_path: Path) -> None:
        base = yaml.safe_load(self._yaml(tmp_path))
        for settings, key in self.bad_settings:
            doc = dict(base)
            sources = [dict(s) for s in doc["sources"]]
            sources[0]["settings"] = {**sources[0].get("settings", {}), **settings}
            doc["sources"] = sources
            text = yaml.safe_dump(doc, sort_keys=False)
            cfg = parse_plant_config(text, "bad.yaml")
            with pytest.raises(ConfigError) as info:
                validate_sources(cfg, parse_yaml(text, "bad.yaml"))
            issue = info.value.issues[0]
            assert issue.line is not None, str(issue)
            assert key in issue.key, f"expected an error at a key containing {key!r}, got {issue}"
