"""``shopfloor ingest``: the central ingest of the unified namespace as a service, from the broker into the
historian (``uns.ingest.Ingest``), with its arguments; ``cli`` only hooks it in.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shopfloor.config.ingest import IngestConfig
from shopfloor.config.schema import HistorianConfig, PlantConfig
from shopfloor.model import system_asset
from shopfloor.service import ServiceRunner

log = logging.getLogger("shopfloor.ingest")

DEFAULT_SITE = "central"  # the site of the ingest's own health signals when no plant config is given


def add_arguments(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    ing = sub.add_parser(
        "ingest",
        help="read the unified namespace from an MQTT broker into the historian (the central ingest)",
    )
    ing.add_argument("--config", help="plant config with an ingest: section (optional)")
    ing.add_argument(
        "--from",
        dest="broker",
        metavar="URL",
        help="the broker, mqtt://HOST[:PORT] or mqtts://… (overrides ingest.url; no password in it: "
        "ingest.password_env / _file; docs/uns.md)",
    )
    ing.add_argument(
        "--historian",
        metavar="URL",
        help="historian URL instead of the config's, e.g. sqlite:///var/shopfloor.db or "
        "influxdb-v1+http://127.0.0.1:8086/shopfloor",
    )
    ing.add_argument("--group", help="shared-subscription group (default shopfloor-ingest)")
    ing.add_argument("--client-id", help="MQTT client id, the key of the persistent session")
    ing.add_argument("--topic-prefix", help="the publishers' topic prefix, e.g. uns/v1")
    ing.add_argument("--status-every", type=float, default=10.0, help="seconds between status log lines")
    ing.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0 = until signal)"
    )
    ing.set_defaults(func=func)


def settings(args: argparse.Namespace, cfg: PlantConfig | None) -> tuple[IngestConfig, HistorianConfig]:
    """The ingest and historian settings of the config with the command line's overrides; ValueError."""
    base = (cfg.ingest if cfg is not None else None) or IngestConfig()
    ingest = base.with_overrides(
        url=args.broker, group=args.group, client_id=args.client_id, topic_prefix=args.topic_prefix
    )
    ingest.broker_settings()  # a URL is there and valid
    historian = cfg.historian if cfg is not None else HistorianConfig()
    if args.historian:
        try:
            historian = HistorianConfig.model_validate(
                {**historian.model_dump(exclude_unset=True), "url": args.historian}
            )
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(f"--historian: {msg}") from None
    return ingest, historian


def cmd_ingest(
    args: argparse.Namespace,
    load: Callable[[str], PlantConfig],
    run: Callable[[str, Coroutine[Any, Any, int]], int],
) -> int:
    cfg = load(args.config) if args.config else None
    try:
        ingest, historian = settings(args, cfg)
    except ValueError as exc:
        print(f"shopfloor ingest: {exc}", file=sys.stderr)
        return 2
    site = cfg.site if cfg is not None else DEFAULT_SITE
    return run("ingest", run_ingest(ingest, historian, site, args.status_every, args.duration))


async def run_ingest(
    ingest: IngestConfig,
    historian: HistorianConfig,
    site: str,
    status_every_s: float = 10.0,
    duration_s: float = 0.0,
    base_dir: str | Path | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or ``duration_s``): what arrived before is written and acknowledged."""
    from historian.factory import open_store
    from shopfloor.app.pipeline import leave
    from uns.ingest import Ingest

    store = open_store(historian, base_dir)
    service = Ingest(
        ingest, store, health_asset=system_asset(site, "shopfloor", "ingest", ingest.resolved_client_id())
    )
    runner = ServiceRunner([service], status_every_s=status_every_s, duration_s=duration_s)
    code = await runner.run()
    s = service.stats()
    quarantined = ",".join(f"{k}:{v}" for k, v in sorted(s.quarantined.items())) or "-"
    log.info(
        "stopped (mqtt-ingest): received=%d written=%d acked=%d quarantined=%d (%s) refused=%d "
        "redelivered=%d unacked=%d pending=%d",
        s.received, s.written, s.acked, s.quarantined_total, quarantined, s.refused,
        s.redelivered, s.unacked, s.pending,
    )  # fmt: skip
    return leave(code)
