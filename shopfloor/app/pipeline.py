"""The live data path as services: historian writer ← bus ← acquisition, and ``shopfloor acquire``.

Builds the writer from the plant config, attaches it to the bus as the first, lossless subscriber.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from historian.factory import open_store
from historian.writer import HistorianWriter
from shopfloor.app.acquisition import Acquisition, load_plant
from shopfloor.bus import Bus
from shopfloor.config.schema import PlantConfig
from shopfloor.model import system_asset
from shopfloor.service import ServiceRunner

log = logging.getLogger("shopfloor.acquire")


def live_stream(cfg: PlantConfig) -> tuple[HistorianWriter, Bus]:
    """The configured writer and a bus whose first subscriber it is (attach others by name)."""
    writer = HistorianWriter(
        open_store(cfg.historian),
        cfg.historian,
        health_asset=system_asset(cfg.site, "shopfloor", "historian-writer"),
    )
    bus = Bus()
    bus.attach("historian", writer.submit, writer.submit_events)
    return writer, bus


async def run_acquire(config_path: str | Path, *, status_every_s: float = 10.0, duration_s: float = 0) -> int:
    """``shopfloor acquire``: run until SIGINT/SIGTERM (or ``duration_s``), then drain, flush and exit."""
    cfg, sources = load_plant(config_path)
    if not sources:
        log.error("no enabled sources in %s: nothing to acquire", config_path)
        return 2
    writer, bus = live_stream(cfg)
    acq = Acquisition(cfg, sources, bus)
    runner = ServiceRunner([writer, bus, acq], status_every_s=status_every_s, duration_s=duration_s)
    log.info("acquiring from %d sources: %s", len(sources), ", ".join(sources))
    code = await runner.run()
    s = writer.stats()
    log.info(
        "stopped: produced=%d written=%d pending=%d dropped=%d quarantined=%d",
        s.produced,
        s.written,
        s.pending,
        s.dropped_total,
        s.quarantined,
    )
    return leave(code)


def leave(code: int) -> int:
    """After a second Ctrl-C (130) exit now: a request stuck in a worker thread (a hung store) must
    not hold the process. Nothing durable is lost: the spool is written with os.write, unbuffered."""
    if code == 130:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code
