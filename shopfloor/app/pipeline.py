"""The live data path as services: historian writer ← bus ← acquisition, and ``shopfloor acquire``.

Builds the writer from the plant config, attaches it to the bus as the first, lossless subscriber;
``acquire --publish`` attaches the MQTT publisher's writer beside it (or instead, ``--no-historian``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from historian.factory import open_store
from historian.writer import HistorianWriter
from shopfloor.app.acquisition import Acquisition, load_plant
from shopfloor.bus import Bus
from shopfloor.config.publish import PublishConfig
from shopfloor.config.schema import PlantConfig
from shopfloor.model import Signal, system_asset
from shopfloor.service import Service, ServiceRunner

log = logging.getLogger("shopfloor.acquire")


def live_stream(cfg: PlantConfig) -> tuple[HistorianWriter, Bus]:
    """The configured writer and a bus whose first subscriber it is (attach others by name)."""
    writers, bus = edge_stream(cfg)
    return writers[0], bus


def edge_stream(
    cfg: PlantConfig, *, historian: bool = True, publish: PublishConfig | None = None
) -> tuple[list[HistorianWriter], Bus]:
    """The writers of ``shopfloor acquire`` on one bus, each a lossless subscriber with its own spool:
    the historian's (unless ``historian`` is False) and the MQTT publisher's (with ``publish``)."""
    bus = Bus()
    writers: list[HistorianWriter] = []
    if historian:
        writer = HistorianWriter(
            open_store(cfg.historian),
            cfg.historian,
            health_asset=system_asset(cfg.site, "shopfloor", "historian-writer"),
        )
        bus.attach("historian", writer.submit, writer.submit_events)
        writers.append(writer)
    if publish is not None:
        from uns.publisher import publish_writer
        from uns.sparkplug import DeviceSpec

        devices = [
            DeviceSpec(a.path, tuple(Signal(s.name, s.unit, s.type, s.description) for s in a.signals))
            for a in cfg.assets
        ]  # declared at a Sparkplug birth, in the config's order
        pw = publish_writer(publish, cfg.site, devices=devices)
        bus.attach("mqtt", pw.submit, pw.submit_events)
        writers.append(pw)
    return writers, bus


def publish_settings(cfg: PlantConfig, url: str | None) -> PublishConfig | None:
    """The config's ``publish:`` section, its URL replaced by ``url`` (``--publish``); ValueError with
    the reason if the result is not valid."""
    if url is None:
        return cfg.publish
    base = cfg.publish.model_dump(exclude_unset=True) if cfg.publish else {}
    try:
        return PublishConfig.model_validate({**base, "url": url})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "publish"
        raise ValueError(f"publish {where}: {err['msg']}") from None


async def run_acquire(
    config_path: str | Path,
    *,
    status_every_s: float = 10.0,
    duration_s: float = 0,
    publish_url: str | None = None,
    historian: bool = True,
) -> int:
    """``shopfloor acquire``: run until SIGINT/SIGTERM (or ``duration_s``), then drain, flush and exit.

    With a ``publish:`` section (or ``publish_url``) every sample and event also goes to the MQTT
    broker; ``historian=False`` (``--no-historian``) leaves the local historian out: an edge box.
    """
    cfg, sources = load_plant(config_path)
    if not sources:
        log.error("no enabled sources in %s: nothing to acquire", config_path)
        return 2
    try:
        publish = publish_settings(cfg, publish_url)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if not historian and publish is None:
        log.error(
            "--no-historian needs --publish URL or a publish: section: there is nowhere else to deliver"
        )
        return 2
    if historian and publish is not None and publish.spool.dir.resolve() == cfg.historian.spool.dir.resolve():
        log.error(
            "publish.spool.dir and historian.spool.dir are both %s: each needs its own", publish.spool.dir
        )
        return 2
    writers, bus = edge_stream(cfg, historian=historian, publish=publish)
    acq = Acquisition(cfg, sources, bus)
    services: list[Service] = [*writers, bus, acq]
    runner = ServiceRunner(services, status_every_s=status_every_s, duration_s=duration_s)
    log.info("acquiring from %d sources: %s", len(sources), ", ".join(sources))
    if publish is not None:
        prefix = publish.topic_prefix.rstrip("/")
        log.info(
            "publishing to %s under %s%s/… (%s, QoS %d)%s",
            publish.broker.redacted(),
            prefix + "/" if prefix else "",
            cfg.site,
            publish.format,
            publish.qos,
            "" if historian else "; no local historian",
        )
    code = await runner.run()
    for w in writers:
        s = w.stats()
        log.info(
            "%s: produced=%d written=%d pending=%d dropped=%d quarantined=%d",
            "stopped" if w.name == HistorianWriter.name else f"stopped ({w.name})",
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
