"""``shopfloor dashboard``: serve the dashboard, and manage its users (passwords never from arguments).

The arguments are built without importing Dash; the commands import it when they run.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

PASSWORD_ENV = "SHOPFLOOR_DASHBOARD_PASSWORD"


def add_arguments(sub: Any, func: Any) -> None:
    d = sub.add_parser("dashboard", help="the live dashboard (Dash behind waitress), and its users")
    d.add_argument("--config", default="examples/qijiang-plant.yaml")
    d.add_argument("--host", help="address to listen on (default: dashboard.host, 127.0.0.1)")
    d.add_argument("--port", type=int, help="port (default: dashboard.port, 8050)")
    d.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)"
    )
    d.set_defaults(func=func, dashboard_command="serve")
    d_sub = d.add_subparsers(dest="dashboard_command", metavar="ACTION")
    u = d_sub.add_parser("user", help="add, remove or list users (roles: viewer, engineer, admin)")
    u_sub = u.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = u_sub.add_parser(
        "add",
        help=f"add a user or change one (password from ${PASSWORD_ENV}, --password-file, or a prompt)",
    )
    add.add_argument("name")
    add.add_argument("--role", choices=["viewer", "engineer", "admin"], default="viewer")
    add.add_argument("--password-file", help="a file holding the password (its first line)")
    rm = u_sub.add_parser("remove", help="remove a user")
    rm.add_argument("name")
    u_sub.add_parser("list", help="users and roles")
    for p in (u, *u_sub.choices.values()):
        p.set_defaults(func=func)
        p.add_argument("--config", default=argparse.SUPPRESS, help="the plant config (its dashboard section)")


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise SystemExit(
                f"dashboard user add: cannot read a password from {args.password_file}: {exc}"
            ) from exc
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise SystemExit(
            f"dashboard user add: give the password in ${PASSWORD_ENV} or --password-file (no terminal to ask on)"
        )
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("dashboard user add: the two passwords differ")
    return first


def cmd_dashboard(args: argparse.Namespace, load: Any, run: Any) -> int:
    cfg = load(args.config)
    if args.dashboard_command == "user":
        from dashboard.auth import Users, UsersError

        users = Users(cfg.dashboard.users_file)
        try:
            if args.user_command == "add":
                users.set(args.name, args.role, _password(args))
                print(f"{args.name}: {args.role} ({users.path})")
            elif args.user_command == "remove":
                if not users.remove(args.name):
                    print(f"no user {args.name} in {users.path}", file=sys.stderr)
                    return 1
                print(f"removed {args.name}")
            else:
                for name in users.names():
                    u = users.get(name)
                    print(f"{name}\t{u.role if u else '?'}")
        except UsersError as exc:
            print(f"dashboard user: {exc}", file=sys.stderr)
            return 2
        return 0
    return run("dashboard", serve(cfg, args.host, args.port, args.duration))


async def serve(cfg: Any, host: str | None, port: int | None, duration_s: float) -> int:
    from dashboard.server import DashboardService
    from shopfloor.service import ServiceRunner

    svc = DashboardService(cfg, host=host, port=port)
    runner = ServiceRunner(
        [svc], status_every_s=60.0, duration_s=duration_s, report=lambda line: print(line, flush=True)
    )
    print(f"Dashboard on {svc.url if svc.port else '(a free port)'} — Ctrl-C stops", flush=True)
    return await runner.run()
