"""``shopfloor mes …``: migrate, serve (deriver + API), orders (list, import, transition, export), kpi, trace;
and ``mes_services``, which builds the MES services for the demo and ``mes serve``.

Thin shells over mes.*; database passwords and API tokens come from env vars or files only.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shopfloor.bus import Bus
from shopfloor.config.schema import PlantConfig
from shopfloor.service import Service, ServiceRunner

log = logging.getLogger("shopfloor.mes")
NS = 1_000_000_000


class OrderSeed:
    """The demo's stand-in for an ERP: on an MES with no orders at all, import a B2MML schedule as
    released orders, which the MES then starts and completes by itself."""

    name = "erp-demo"

    def __init__(self, repo: Any, path: Path) -> None:
        self.repo = repo
        self.path = path

    async def start(self) -> None:
        from mes import b2mml
        from mes.order_spec import OrderStatus

        def seed() -> int:
            if self.repo.orders(limit=1).total:
                return 0
            specs = b2mml.parse_production_schedule(
                self.path.read_bytes(), known_assets=self.repo.known_assets()
            )
            return len(self.repo.create_orders(specs, self.name, OrderStatus.RELEASED))

        n = await asyncio.to_thread(seed)
        if n:
            log.info("demo: released %d work orders from %s", n, self.path)

    async def stop(self) -> None:
        return None

    def status(self) -> str | None:
        return None


def mes_services(
    cfg: PlantConfig, bus: Bus | None, *, api: bool = True, seed_orders: Path | None = None
) -> list[Service]:
    """The MES deriver (a bus subscriber when ``bus`` is given, else a historian follower), its API, and
    for the demo an order seed."""
    from historian.factory import open_reader
    from mes.api import ApiService, Tokens, create_app
    from mes.db import open_engine
    from mes.service import MesService

    engine = open_engine(cfg.mes)
    assets = [(a.path, a.kind, a.description) for a in cfg.assets]
    maker = None
    if cfg.mes.lots:
        from mes import lots

        maker = lots.LotMaker(cfg.mes)
    svc = MesService(cfg.mes, engine, assets, open_reader(cfg.historian), bus, lot_maker=maker)
    out: list[Service] = [svc]
    if api:
        app = create_app(svc.repo, Tokens.from_config(cfg.mes.api), cfg.timezone, cfg.mes.api.max_body_bytes)
        out.append(ApiService(app, cfg.mes.api))
    if seed_orders is not None and seed_orders.is_file():
        out.append(OrderSeed(svc.repo, seed_orders))
    return out


def _repo(cfg: PlantConfig) -> Any:
    from mes.db import migrate, open_engine
    from mes.repository import Repository

    engine = open_engine(cfg.mes)
    migrate(engine)
    return Repository(engine, cfg.mes)


def _actor(args: argparse.Namespace) -> str:
    return args.actor or getpass.getuser()


def _time(text: str | None, default: datetime) -> int:
    if not text:
        dt = default
    else:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            raise SystemExit(f"time {text!r} needs a time zone, e.g. {text}+08:00 or {text}Z")
    return int(dt.timestamp()) * NS


def cmd_mes(args: argparse.Namespace, load: Any) -> int:
    cfg: PlantConfig = load(args.config)
    action = args.mes_command
    if action == "migrate":
        from mes.db import describe, migrate, open_engine

        engine = open_engine(cfg.mes)
        before, after = migrate(engine)
        print(f"{describe(engine)}: schema {before or 'empty'} -> {after}")
        return 0
    if action == "serve":
        return asyncio.run(_serve(cfg, args))
    repo = _repo(cfg)
    repo.sync_plant([(a.path, a.kind, a.description) for a in cfg.assets])
    if action == "orders":
        return _orders(repo, args)
    if action == "kpi":
        return _kpi(repo, cfg, args)
    if action == "trace":
        from mes import lots

        with repo.engine.connect() as conn:
            try:
                tr = lots.trace(conn, args.lot, "forward" if args.forward else "backward")
            except LookupError:
                print(f"no lot {args.lot}", file=sys.stderr)
                return 1
        print(json.dumps(tr.as_dict(), indent=2, default=str))
        return 0
    raise SystemExit(f"unknown mes command {action}")


async def _serve(cfg: PlantConfig, args: argparse.Namespace) -> int:
    services = mes_services(cfg, None, api=not args.no_api)
    return await ServiceRunner(services, status_every_s=args.status_every, duration_s=args.duration).run()


def _orders(repo: Any, args: argparse.Namespace) -> int:
    from mes.order_spec import OrderStatus
    from mes.repository import Conflict, NotFound

    try:
        if args.orders_action == "list":
            page = repo.orders(args.status, args.asset, args.limit, 0)
            for o in page.items:
                print(
                    f"{o['id']:<20} {o['status']:<10} {o['asset']:<45} {o['product']:<20} {o['quantity']:g} {o['unit']}"
                )
            print(f"({len(page.items)} of {page.total})")
        elif args.orders_action == "import":
            from mes import b2mml, order_csv

            data = Path(args.file).read_bytes()
            known = repo.known_assets()
            try:
                if args.file.endswith(".csv"):
                    specs = order_csv.parse_orders_csv(data, known_assets=known)
                else:
                    specs = b2mml.parse_production_schedule(data, known_assets=known)
            except ValueError as exc:
                print(f"{args.file}: refused, nothing imported: {exc}", file=sys.stderr)
                return 2
            status = OrderStatus.RELEASED if args.release else OrderStatus.PLANNED
            rows = repo.create_orders(specs, _actor(args), status)
            print(f"imported {len(rows)} orders ({status.value})")
        elif args.orders_action == "transition":
            o = repo.transition(args.id, OrderStatus(args.to), _actor(args))
            print(f"{o['id']}: {o['status']}")
        elif args.orders_action == "export":
            from mes import b2mml

            sys.stdout.buffer.write(b2mml.production_performance(repo.performance()))
    except (Conflict, NotFound) as exc:
        print(str(exc).strip("'\""), file=sys.stderr)
        return 1
    return 0


def _kpi(repo: Any, cfg: PlantConfig, args: argparse.Namespace) -> int:
    from mes import calendar, kpi

    now = datetime.now(UTC)
    end = _time(args.end, now)
    start = _time(args.start, now - timedelta(days=1)) if args.start else end - 86400 * NS
    assets = sorted(
        a for a in repo.known_assets() if a == args.asset or a.startswith(args.asset.rstrip("/") + "/")
    )
    if not assets:
        print(f"unknown asset or line {args.asset}", file=sys.stderr)
        return 1
    iv, cn = repo.kpi_inputs(assets, start, end, end)
    k = kpi.kpis(
        iv,
        cn,
        start,
        end,
        list(range(len(assets))),
        calendar.scheduled(cfg.mes, cfg.timezone, start, end),
        calendar.planned(cfg.mes, cfg.timezone, start, end, repo.planned_stop_ranges(start, end)),
    )
    if args.json:
        print(json.dumps({"asset": args.asset, **k.as_dict(), "waterfall": k.waterfall()}, default=str))
        return 0
    d = k.as_dict()
    for key in ("availability", "effectiveness", "quality_ratio", "oee", "teep", "mtbf_s", "mttr_s"):
        v = d.get(key)
        print(f"{key:<22} {'-' if v is None else f'{v:.4f}'}")
    for step in k.waterfall():
        print(f"  {step[0]:<28} {step[1] / 3600:10.2f} h  {step[2]}")
    return 0


def add_arguments(sub: Any, func: Any) -> None:
    mes = sub.add_parser("mes", help="the MES: migrate, serve, orders, kpi, trace")
    ms = mes.add_subparsers(dest="mes_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True)
        p.set_defaults(func=func)

    common(ms.add_parser("migrate", help="create or upgrade the MES database schema"))
    sv = ms.add_parser("serve", help="derive from the historian and serve the API until stopped")
    common(sv)
    sv.add_argument("--no-api", action="store_true")
    sv.add_argument("--status-every", type=float, default=30.0)
    sv.add_argument("--duration", type=float, default=0)
    od = ms.add_parser("orders", help="list, import (B2MML or CSV), transition, export (B2MML)")
    common(od)
    od.add_argument("orders_action", choices=["list", "import", "transition", "export"])
    od.add_argument("file_or_id", nargs="?", help="import: the file; transition: the order id")
    od.add_argument("to", nargs="?", help="transition: the new status")
    od.add_argument("--status")
    od.add_argument("--asset")
    od.add_argument("--limit", type=int, default=100)
    od.add_argument("--release", action="store_true", help="import as released (ready to start)")
    od.add_argument("--actor", help="who is acting (for the audit trail); default: your user name")
    kp = ms.add_parser("kpi", help="OEE, availability, effectiveness, quality, TEEP, MTBF/MTTR, waterfall")
    common(kp)
    kp.add_argument("asset", help="an asset or a line path (its assets add up)")
    kp.add_argument("--start", help="ISO 8601 with zone; default 24 h before --end")
    kp.add_argument("--end", help="ISO 8601 with zone; default now")
    kp.add_argument("--json", action="store_true")
    tr = ms.add_parser("trace", help="a lot's genealogy: backward to its melts, or --forward to its coils")
    common(tr)
    tr.add_argument("lot")
    tr.add_argument("--forward", action="store_true")


def normalise(args: argparse.Namespace) -> None:
    if getattr(args, "mes_command", None) == "orders":
        args.file = args.id = args.file_or_id
        if args.orders_action in ("import", "transition") and not args.file_or_id:
            raise SystemExit(
                f"mes orders {args.orders_action} needs {'a file' if args.orders_action == 'import' else 'an order id'}"
            )
        if args.orders_action == "transition" and not args.to:
            raise SystemExit("mes orders transition needs the new status")
