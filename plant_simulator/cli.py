"""Command line of the simulator: ``shopfloor simulate`` and ``python -m plant_simulator``.

Online it serves OPC UA and Modbus TCP until Ctrl-C, continuing the simulated time of the previous
run (``--state-dir``); offline it writes Parquet/CSV and the ground truth, saying first how much.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from plant_simulator.clock import DEFAULT_START, parse_start
from plant_simulator.plant import Plant
from plant_simulator.service import (
    DEFAULT_STATE_DIR,
    PortUnavailable,
    SimulatorOptions,
    SimulatorService,
    StateError,
    plant_for,
    resume_start_ns,
)
from shopfloor.logs import quiet_library_logs

PASSWORD_ENV = "SHOPFLOOR_SIM_OPCUA_PASSWORD"
LARGE_OUTPUT_BYTES = 1_000_000_000  # above this, the estimate suggests --every


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--config",
        type=Path,
        help="plant config YAML whose assets to simulate (default: the Qijiang "
        "demo plant); assets of unknown kind are skipped",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed and config give identical data"
    )
    g.add_argument(
        "--start",
        default=None,
        help=f"simulated start instant, ISO 8601 UTC (offline default {DEFAULT_START}; online default: "
        "now, or just after the last simulated time an earlier run served, whichever is later)",
    )
    g.add_argument(
        "--sensor-fault-interval-days",
        type=float,
        default=10.0,
        help="mean days between random sensor faults per asset (0 disables them)",
    )
    g.add_argument("--print-register-map", action="store_true", help="print the Modbus register map and exit")
    g.add_argument(
        "--print-config",
        action="store_true",
        help="print the plant config (assets + OPC UA/Modbus sources) for reading the simulator, and exit",
    )
    o = parser.add_argument_group("online")
    o.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (1 to 1000)")
    o.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    o.add_argument("--opcua-port", type=int, default=4840, help="OPC UA port (0 disables OPC UA)")
    o.add_argument("--modbus-port", type=int, default=5020, help="Modbus TCP port (0 disables Modbus)")
    o.add_argument("--tick", type=float, default=0.5, help="wall seconds between publications")
    o.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the simulated time served so far is kept, so a restart continues after it "
        f"(default {DEFAULT_STATE_DIR})",
    )
    o.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # under `shopfloor`, its global -v/--verbose stays in force
        help="also log asyncua's and pymodbus' INFO messages",
    )
    o.add_argument(
        "--opcua-security",
        choices=["none", "sign", "sign-and-encrypt", "both"],
        default="none",
        help="secured endpoints to offer (for each --opcua-policy); with security the None endpoint is not offered",
    )
    o.add_argument(
        "--opcua-policy",
        action="append",
        choices=["Basic256Sha256", "Aes128_Sha256_RsaOaep"],
        default=None,
        help="security policy of the secured endpoints; repeat to offer both (default Basic256Sha256)",
    )
    o.add_argument(
        "--opcua-cert-dir",
        type=Path,
        default=Path("var/simulator-pki"),
        help="where the server certificate and key are generated (directory mode 700, key 600)",
    )
    o.add_argument(
        "--opcua-trust-dir",
        type=Path,
        default=None,
        help="with security: the client certificates accepted (default OPCUA_CERT_DIR/trusted); "
        "a refused one is saved to OPCUA_CERT_DIR/rejected",
    )
    o.add_argument(
        "--opcua-user",
        default=None,
        help=f"require this user name; the password is read from ${PASSWORD_ENV} (never from argv)",
    )
    o.add_argument(
        "--opcua-user-cert",
        action="append",
        type=Path,
        default=None,
        help="accept X.509 user identities with this certificate (.der/.pem; repeatable; needs security)",
    )
    f = parser.add_argument_group("offline")
    f.add_argument("--offline", action="store_true", help="generate data files instead of serving")
    f.add_argument("--days", type=float, default=1.0, help="simulated days to generate (rounded up to hours)")
    f.add_argument("--out", type=Path, default=Path("var/simulation"), help="output directory")
    f.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    f.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="SECONDS",
        help="keep one row every SECONDS simulated seconds (default 1: every step) for a smaller data set",
    )
    f.add_argument("--quiet", action="store_true", help="no progress bar")


def build_plant(args: argparse.Namespace, start_ns: int | None) -> Plant:
    cfg = None
    if args.config is not None:
        from shopfloor.config import load_plant_config

        cfg = load_plant_config(args.config)
    return plant_for(cfg, args.seed, start_ns, args.sensor_fault_interval_days)


def online_start_ns(args: argparse.Namespace) -> int:
    """An explicit ``--start`` wins; otherwise resume after the state dir's last served time (or now)."""
    if args.start is not None and args.start != "now":
        return parse_start(args.start)
    return resume_start_ns(args.state_dir, time.time_ns())


def _port_hint(exc: PortUnavailable) -> str:
    flag = "--opcua-port" if exc.protocol == "OPC UA" else "--modbus-port"
    if exc.in_use:
        return (
            f"stop the process that uses it (another simulator or demo?) or choose a free port with "
            f"{flag} PORT ({flag} 0 turns {exc.protocol} off)"
        )
    return f"choose another port with {flag} PORT or another address with --host"


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_library_logs(getattr(args, "verbose", False))
    if args.print_register_map:
        from plant_simulator.register_map import build_register_map, render_markdown

        plant = build_plant(args, parse_start(DEFAULT_START))
        print(render_markdown(build_register_map({p: plant.signals(p) for p in plant.assets})))
        return 0
    if args.print_config:
        from plant_simulator.config_gen import render_yaml

        plant = build_plant(args, parse_start(DEFAULT_START))
        sys.stdout.write(
            render_yaml(
                plant,
                host=args.host,
                opcua_port=args.opcua_port or 4840,
                modbus_port=args.modbus_port or 5020,
            )
        )
        return 0
    if args.offline:
        return run_offline(args)
    if args.opcua_security == "none" and args.opcua_policy:
        print("--opcua-policy needs --opcua-security sign/sign-and-encrypt/both", file=sys.stderr)
        return 2
    if args.opcua_user and not os.environ.get(PASSWORD_ENV):
        print(f"--opcua-user needs the password in ${PASSWORD_ENV}", file=sys.stderr)
        return 2
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"shopfloor simulate: {exc}", file=sys.stderr)
        return 2
    try:
        plant = build_plant(args, online_start_ns(args))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(plant, options))
    except PortUnavailable as exc:
        print(f"shopfloor simulate: {exc}: {_port_hint(exc)}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"shopfloor simulate: {exc}", file=sys.stderr)
        return 2
    return 0


def run_offline(args: argparse.Namespace) -> int:
    """Say how much will be written, then write it (nothing is asked: the estimate is printed)."""
    from plant_simulator.offline import MAX_EVERY_S, estimate, generate, human_bytes

    if not 1 <= args.every <= MAX_EVERY_S:
        print(f"shopfloor simulate: --every must be from 1 to {MAX_EVERY_S} seconds", file=sys.stderr)
        return 2
    plant = build_plant(args, parse_start(args.start or DEFAULT_START))
    est = estimate(plant, args.days, args.format, args.every)
    cadence = "every simulated second" if args.every == 1 else f"one row every {args.every} s"
    print(
        f"writing {est.days:g} simulated days of {len(plant.assets)} assets ({cadence}: "
        f"{est.rows_per_asset:,} rows per asset, {est.values:,} values) to {args.out}: "
        f"estimated size {est.text()} ({args.format})",
        flush=True,
    )
    if est.bytes > LARGE_OUTPUT_BYTES and args.every == 1:
        smaller = estimate(plant, args.days, args.format, 10)
        print(
            f"  for a smaller data set, --every 10 keeps one row every 10 s (about {human_bytes(smaller.bytes)})"
            " or use fewer --days",
            flush=True,
        )
    res = generate(plant, args.days, args.out, args.format, None if args.quiet else sys.stderr, args.every)
    print(
        f"wrote {res.days:g} simulated days ({res.values:,} values) to {args.out} in {res.wall_s:.1f} s "
        f"({res.speedup:,.0f}x real time)"
    )
    return 0


def options_from_args(args: argparse.Namespace) -> SimulatorOptions:
    """The serving options the command line asked for; the OPC UA password comes from the environment."""
    return SimulatorOptions(
        speed=args.speed,
        host=args.host,
        opcua_port=args.opcua_port,
        modbus_port=args.modbus_port,
        tick_s=args.tick,
        opcua_security=args.opcua_security,
        opcua_policies=tuple(args.opcua_policy or ("Basic256Sha256",)),
        opcua_cert_dir=args.opcua_cert_dir,
        opcua_user=args.opcua_user,
        opcua_password=os.environ.get(PASSWORD_ENV) if args.opcua_user else None,
        opcua_user_certs=tuple(args.opcua_user_cert or ()),
        opcua_trust_dir=args.opcua_trust_dir,
        state_dir=args.state_dir,
    )


async def serve(plant: Plant, options: SimulatorOptions) -> None:
    """Serve until Ctrl-C or SIGTERM; both stop cleanly (the state file records the last served step)."""
    service = SimulatorService(plant, options)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        stopped.set()  # the first Ctrl-C stops in order, like SIGTERM; a second one leaves at once
        loop.remove_signal_handler(signal.SIGINT)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not on every platform
        loop.add_signal_handler(signal.SIGTERM, stopped.set)  # before start: no gap
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    await service.start()
    try:
        await stopped.wait()
    finally:
        await service.stop()
