"""Command line of the simulator: ``shopfloor simulate`` and ``python -m plant_simulator``.

Online it serves OPC UA and Modbus TCP until Ctrl-C; offline it writes Parquet/CSV and the ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from plant_simulator.clock import DEFAULT_START, SimClock, parse_start
from plant_simulator.plant import Plant, default_plant

PASSWORD_ENV = "SHOPFLOOR_SIM_OPCUA_PASSWORD"


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
        help=f"simulated start instant, ISO 8601 UTC (offline default {DEFAULT_START}; online default now)",
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
        help="where the server certificate and key are generated",
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
    f.add_argument("--quiet", action="store_true", help="no progress bar")


def build_plant(args: argparse.Namespace, start_ns: int | None) -> Plant:
    kw = {"sensor_fault_interval_days": args.sensor_fault_interval_days}
    if args.config is None:
        return default_plant(seed=args.seed, start_ns=start_ns, **kw)
    from plant_simulator.from_config import assets_from_config
    from shopfloor.config import load_plant_config

    cfg = load_plant_config(args.config)
    return Plant(
        assets_from_config(cfg), seed=args.seed, start_ns=start_ns, name=cfg.name, site=cfg.site, **kw
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
        from plant_simulator.offline import generate

        plant = build_plant(args, parse_start(args.start or DEFAULT_START))
        res = generate(plant, args.days, args.out, args.format, None if args.quiet else sys.stderr)
        print(
            f"wrote {res.days:g} simulated days ({res.values:,} values) to {args.out} in {res.wall_s:.1f} s "
            f"({res.speedup:,.0f}x real time)"
        )
        return 0
    if not 0 < args.speed <= 1000:
        print("--speed must be between 1 and 1000", file=sys.stderr)
        return 2
    plant = build_plant(args, parse_start(args.start or "now"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(plant, args))
    return 0


async def serve(plant: Plant, args: argparse.Namespace) -> None:
    from plant_simulator.online import OnlinePlant, Publisher

    sinks = []
    stack = contextlib.AsyncExitStack()
    async with stack:
        if args.modbus_port:
            from plant_simulator.modbus_server import SimModbusServer
            from plant_simulator.register_map import build_register_map

            mb = SimModbusServer(
                build_register_map({p: plant.signals(p) for p in plant.assets}), args.host, args.modbus_port
            )
            await mb.start()
            stack.push_async_callback(mb.stop)
            sinks.append(mb)
        if args.opcua_port:
            from plant_simulator.opcua_server import OpcUaSecurity, SimOpcUaServer

            modes = {
                "none": (),
                "sign": ("Sign",),
                "sign-and-encrypt": ("SignAndEncrypt",),
                "both": ("Sign", "SignAndEncrypt"),
            }[args.opcua_security]
            password = os.environ.get(PASSWORD_ENV) if args.opcua_user else None
            if args.opcua_user and not password:
                raise SystemExit(f"--opcua-user needs the password in ${PASSWORD_ENV}")
            if not modes and (args.opcua_policy or args.opcua_user_cert):
                raise SystemExit(
                    "--opcua-policy and --opcua-user-cert need --opcua-security sign/sign-and-encrypt/both"
                )
            security = OpcUaSecurity(
                modes,
                args.opcua_cert_dir,
                args.opcua_user,
                password,
                tuple(args.opcua_policy or ("Basic256Sha256",)),
                tuple(args.opcua_user_cert or ()),
            )
            ua_srv = SimOpcUaServer(
                {p: plant.signals(p) for p in plant.assets},
                args.host,
                args.opcua_port,
                security,
                {p: rt.model.description for p, rt in plant.assets.items()},
            )
            await ua_srv.start()
            stack.push_async_callback(ua_srv.stop)
            sinks.append(ua_srv)
        clock = SimClock(plant.start_ns, args.speed)
        pub = Publisher(OnlinePlant(plant), clock, sinks, args.tick)
        logging.getLogger("plant_simulator").info("simulating at %gx; Ctrl-C to stop", args.speed)
        await pub.run()
