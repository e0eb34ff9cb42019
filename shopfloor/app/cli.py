"""The ``shopfloor`` command line: config checks, the demo, the simulator, the spool and the historian.

Each subcommand is a thin shell over a library call; secrets never come from arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from historian.base import AGG_FNS
from shopfloor import __version__
from shopfloor.config import ConfigError, json_schema, load_plant_config
from shopfloor.config.schema import PlantConfig
from shopfloor.logs import quiet_library_logs

log = logging.getLogger("shopfloor")

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _load(path: str) -> PlantConfig:
    try:
        return load_plant_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


# -- config --------------------------------------------------------------------------------------
def cmd_config_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for file in args.files:
        try:
            cfg = load_plant_config(file, check_sources=not args.no_sources)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            print(f"{file}: {len(exc.issues)} error(s)", file=sys.stderr)
            status = EXIT_CONFIG
            continue
        signals = sum(len(a.signals) for a in cfg.assets)
        print(
            f"{file}: OK — site {cfg.site}, {len(cfg.assets)} assets, {signals} signals, {len(cfg.sources)} sources"
        )
    return status


def cmd_config_schema(args: argparse.Namespace) -> int:
    text = json_schema()
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return EXIT_OK


# -- acquisition and connectors ----------------------------------------------------------------
def _run(command: str, main: Coroutine[Any, Any, int]) -> int:
    """Run a long-running command; a problem found while starting is one line on stderr, exit 2."""
    from historian.spool import SpoolUnusable
    from plant_simulator.service import PortUnavailable
    from plant_simulator.state import StateError
    from shopfloor.secrets import SecretError

    try:
        return asyncio.run(main)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
    except PortUnavailable as exc:
        print(
            f"shopfloor {command}: the virtual plant's {exc}: stop the program using it, or change the "
            "port in the source's settings",
            file=sys.stderr,
        )
    except (SpoolUnusable, SecretError, StateError) as exc:
        print(f"shopfloor {command}: {exc}", file=sys.stderr)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"shopfloor {command}: a port it must listen on is already in use ({exc.strerror}): stop the "
            "other program, or change the port in the config",
            file=sys.stderr,
        )
    return EXIT_CONFIG


def cmd_acquire(args: argparse.Namespace) -> int:
    from shopfloor.app.pipeline import run_acquire
    from shopfloor.config.publish import parse_mqtt_url

    if args.publish is not None:
        try:
            parse_mqtt_url(args.publish)
        except ValueError as exc:
            print(f"shopfloor acquire: --publish: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return _run(
        "acquire",
        run_acquire(
            args.config,
            status_every_s=args.status_every,
            duration_s=args.duration,
            publish_url=args.publish,
            historian=not args.no_historian,
        ),
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from shopfloor.app import ingest_cli

    return ingest_cli.cmd_ingest(args, _load, _run)


def cmd_connectors_list(args: argparse.Namespace) -> int:
    from shopfloor.plugins import PluginError, available, load

    infos = available()
    if not infos:
        print("no connectors installed (entry-point group shopfloor.connectors)")
        return EXIT_OK
    status = EXIT_OK
    print(f"{'name':<12} {'distribution':<28} {'version':<10} {'api':<4} target")
    for info in infos:
        try:
            api, problem = str(load(info.name).spec.api_version), ""
        except PluginError as exc:
            api, problem, status = "-", str(exc), EXIT_FAIL
        print(f"{info.name:<12} {info.distribution:<28} {info.version:<10} {api:<4} {info.target}")
        if problem:
            print(f"{'':<12} ! {problem}")
    return status


def cmd_dashboard(args: argparse.Namespace) -> int:
    from shopfloor.app import dashboard_cli

    return dashboard_cli.cmd_dashboard(args, _load, _run)


# -- demo / simulate -----------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from shopfloor.app.demo import run_demo

    return _run(
        "demo",
        run_demo(
            args.config,
            duration_s=args.duration,
            speed=args.speed,
            port=args.port,
            historian=args.historian,
            history_days=args.history_days,
        ),
    )


def _simulator() -> object | None:
    try:
        from plant_simulator import cli as sim_cli
    except ImportError:
        return None
    return sim_cli if hasattr(sim_cli, "add_arguments") else None


def _opcua_browse() -> object | None:
    try:
        from connectors.opcua import browse
    except ImportError:
        return None
    return browse if hasattr(browse, "add_arguments") else None


# -- mes -----------------------------------------------------------------------------------------
def cmd_mes(args: argparse.Namespace) -> int:
    from shopfloor.app import mes_cli

    mes_cli.normalise(args)
    return mes_cli.cmd_mes(args, _load)


# -- analytics -----------------------------------------------------------------------------------
def cmd_analytics(args: argparse.Namespace) -> int:
    from shopfloor.app import analytics_cli

    return analytics_cli.cmd_analytics(args)


# -- spool and quarantine ------------------------------------------------------------------------
def cmd_spool_status(args: argparse.Namespace) -> int:
    from historian.quarantine import Quarantine
    from historian.spool import Spool

    cfg = _load(args.config).historian
    spool = Spool(
        cfg.spool.dir, cfg.spool.max_bytes, cfg.spool.segment_bytes, cfg.spool.when_full, cfg.spool.fsync
    )
    report = spool.open(readonly=True)  # beside a running writer: read, lock nothing, change nothing
    stats = spool.stats()
    spool.close()
    out = {
        "dir": str(cfg.spool.dir),
        "pending_points": stats.pending_points,
        "bytes": stats.bytes,
        "max_bytes": cfg.spool.max_bytes,
        "segments": stats.segments,
        "torn_bytes": report.torn_bytes,
        "quarantined_points": len(Quarantine(cfg.spool.dir)),
    }
    print(json.dumps(out, indent=2))
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from historian.factory import open_store
    from historian.quarantine import Quarantine

    cfg = _load(args.config).historian
    q = Quarantine(cfg.spool.dir)
    if args.action == "list":
        for e in q.entries():
            print(json.dumps(e.to_json(), ensure_ascii=False))
        return EXIT_OK
    if args.action == "export":
        n = q.export(args.output)
        print(f"exported {n} quarantined entries to {args.output}")
        return EXIT_OK

    async def retry() -> tuple[int, int]:
        store = open_store(cfg)
        await store.open()
        try:
            return await q.retry(store)
        finally:
            await store.close()

    written, kept = asyncio.run(retry())
    print(f"retried quarantine: {written} written, {kept} still refused")
    return EXIT_OK if kept == 0 else EXIT_FAIL


# -- historian reads -----------------------------------------------------------------------------
def cmd_historian(args: argparse.Namespace) -> int:
    from historian.errors import StoreError
    from historian.factory import open_reader
    from historian.reader import HistorianReader
    from shopfloor.app.display import format_ts, format_value, json_value
    from shopfloor.model import now_ns

    cfg = _load(args.config).historian

    def when(ts: int) -> str | int:
        return ts if args.raw_time else format_ts(ts)

    def emit(row: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps({k: json_value(v) for k, v in row.items()}, ensure_ascii=False))
        else:
            print("\t".join(format_value(v) if k == "value" else str(v) for k, v in row.items()))

    async def run() -> int:
        store = open_reader(cfg)  # reads only: creates no database and no file
        try:
            await store.open()
            await show(store)
        except StoreError as exc:
            print(f"shopfloor historian: {exc}", file=sys.stderr)
            return EXIT_FAIL
        finally:
            await store.close()
        return EXIT_OK

    async def show(store: HistorianReader) -> None:
        if args.action == "series":
            for key in await store.list_series():
                emit({"asset": key.asset, "signal": key.signal})
        elif args.action == "latest":
            for s in await store.latest(args.asset):
                emit({"asset": s.asset, "signal": s.signal, "value": s.value,
                      "quality": s.quality.name, "time": when(s.ts_ns)})  # fmt: skip
        else:
            # the window ends at the series' newest sample (a simulator's clock may run ahead)
            newest = [x.ts_ns for x in await store.latest(args.asset) if x.signal == args.signal]
            end = newest[0] + 1 if newest else now_ns()
            start = end - int(args.minutes * 60e9)
            every = int(args.every * 1e9)
            frame = await store.query_agg(args.asset, args.signal, start, end, every, args.fn)
            for t, v in zip(frame.ts.tolist(), frame.value.tolist()):
                emit({"time": when(t), "value": v})

    return asyncio.run(run())


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shopfloor",
        description="Shopfloor digital factory platform: acquisition, historian, MES, analytics, dashboard.",
    )
    p.add_argument("--version", action="version", version=f"shopfloor {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the INFO lines of the libraries underneath (asyncua, pymodbus, urllib3)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    cfg = sub.add_parser("config", help="check a plant config or print its JSON Schema")
    cfg_sub = cfg.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = cfg_sub.add_parser("validate", help="validate plant config files; errors name file:line:column key")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.set_defaults(func=cmd_config_validate)
    v.add_argument(
        "--no-sources", action="store_true", help="skip loading connectors to check source settings/tags"
    )
    s = cfg_sub.add_parser("schema", help="print the plant config JSON Schema (for editors)")
    s.add_argument("-o", "--output", help="write to this file instead of stdout")
    s.set_defaults(func=cmd_config_schema)

    acq = sub.add_parser(
        "acquire",
        help="read every enabled source and stream into the historian (and/or an MQTT broker) until stopped",
    )
    acq.add_argument("--config", required=True)
    acq.add_argument("--status-every", type=float, default=10.0, help="seconds between status log lines")
    acq.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0 = until signal)"
    )
    acq.add_argument(
        "--publish",
        metavar="URL",
        help="also publish every sample and event to this MQTT broker, mqtt://HOST[:PORT] or mqtts://… "
        "(overrides publish.url; no password in it: publish.password_env / _file; docs/uns.md)",
    )
    acq.add_argument(
        "--no-historian",
        action="store_true",
        help="publish only, without the local historian (an edge box; needs --publish or publish:)",
    )
    acq.set_defaults(func=cmd_acquire)

    from shopfloor.app import ingest_cli

    ingest_cli.add_arguments(sub, cmd_ingest)

    con = sub.add_parser("connectors", help="installed connector plugins")
    con_sub = con.add_subparsers(dest="connectors_command", metavar="ACTION", required=True)
    cl = con_sub.add_parser("list", help="name -> distribution -> version -> API version")
    cl.set_defaults(func=cmd_connectors_list)

    browse = _opcua_browse()
    if browse is not None:
        op = sub.add_parser("opcua", help="OPC UA tools")
        op_sub = op.add_subparsers(dest="opcua_command", metavar="ACTION", required=True)
        ob = op_sub.add_parser("browse", help="print a server's address space and a ready config snippet")
        browse.add_arguments(ob)  # type: ignore[attr-defined]
        ob.set_defaults(func=browse.run)  # type: ignore[attr-defined]

    demo = sub.add_parser("demo", help="run the demo plant end to end on the embedded store")
    demo.add_argument("--config", default="examples/qijiang-plant.yaml")
    demo.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)"
    )
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    demo.add_argument("--port", type=int, help="the dashboard's port (default: dashboard.port, 8050)")
    demo.add_argument(
        "--history-days",
        type=float,
        default=35.0,
        help="first start only: days of history simulated into the store and trained on (0: none)",
    )
    demo.add_argument(
        "--historian",
        help="historian URL instead of the config's, e.g. influxdb-v1+http://127.0.0.1:8086/shopfloor",
    )
    demo.set_defaults(func=cmd_demo)

    sim = _simulator()
    if sim is not None:
        sp = sub.add_parser(
            "simulate", help="run the virtual plant: OPC UA and Modbus servers, or offline data"
        )
        sim.add_arguments(sp)  # type: ignore[attr-defined]
        sp.set_defaults(func=sim.run)  # type: ignore[attr-defined]

    from shopfloor.app import mes_cli

    mes_cli.add_arguments(sub, cmd_mes)

    from shopfloor.app import analytics_args

    analytics_args.add_arguments(sub, cmd_analytics)

    from shopfloor.app import dashboard_cli

    dashboard_cli.add_arguments(sub, cmd_dashboard)

    spool = sub.add_parser("spool", help="inspect the historian spool and its quarantine")
    spool_sub = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    st = spool_sub.add_parser("status", help="pending points, bytes and quarantine size")
    st.add_argument("--config", required=True)
    st.set_defaults(func=cmd_spool_status)
    qu = spool_sub.add_parser("quarantine", help="points the store refused: list, export, retry")
    qu.add_argument("action", choices=["list", "export", "retry"])
    qu.add_argument("--config", required=True)
    qu.add_argument("-o", "--output", default="quarantine.json", help="export destination")
    qu.set_defaults(func=cmd_quarantine)

    hist = sub.add_parser("historian", help="read from the configured historian")
    hist.add_argument("action", choices=["series", "latest", "query"])
    hist.add_argument("--config", required=True)
    hist.add_argument("--asset")
    hist.add_argument("--signal")
    hist.add_argument("--fn", default="mean", choices=list(AGG_FNS))
    hist.add_argument(
        "--minutes", type=float, default=60.0, help="query: how far back from the newest sample"
    )
    hist.add_argument("--every", type=float, default=60.0, help="query: bucket width in seconds")
    hist.add_argument("--json", action="store_true", help="one JSON object per line")
    hist.add_argument(
        "--raw-time", action="store_true", help="print UTC nanoseconds since the epoch instead of ISO 8601"
    )
    hist.set_defaults(func=cmd_historian)
    return p


def serves(args: argparse.Namespace) -> bool:
    """Whether the command runs servers or sockets until stopped (demo, dashboard, acquire, ...)."""
    cmd = getattr(args, "command", None)
    if cmd in ("demo", "acquire", "ingest", "simulate"):
        return True
    if cmd == "dashboard":
        return getattr(args, "dashboard_command", None) != "user"
    sub = {"dashboard": "dashboard_command", "mes": "mes_command", "analytics": "analytics_command"}
    return cmd in sub and getattr(args, sub[cmd], None) in ("serve", "run")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGPIPE") and not serves(args):
        # `shopfloor historian query ... | head` ends quietly, like other CLI tools. Never for a command
        # that serves: there a browser closing its socket mid-response would kill the whole process.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_library_logs(verbose=args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    if args.command == "historian" and args.action == "query" and not (args.asset and args.signal):
        parser.error("historian query needs --asset and --signal")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
