"""``shopfloor analytics spc``: a control chart of one historian signal, limits from a stated baseline period.

Subgroups are the signal's values in consecutive ``--every`` buckets; individuals are the bucket means.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Any

import numpy as np

NS = 1_000_000_000


def _ns(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise SystemExit(f"analytics spc: {text!r} needs a time zone (e.g. 2026-12-01T00:00:00Z)")
    return int(t.timestamp()) * NS


async def _values(
    cfg: Any, asset: str, signal: str, start: int, end: int, every_ns: int, n: int
) -> np.ndarray:
    """Individuals (bucket means) or, with n > 1, subgroups of the first n raw values of each bucket."""
    from historian.factory import open_reader

    reader = open_reader(cfg.historian)
    await reader.open()
    try:
        if n <= 1:
            f = await reader.query_agg(asset, signal, start, end, every_ns, "mean")
            return f.value[np.isfinite(f.value)]
        raw = await reader.query_raw(asset, signal, start, end)
    finally:
        await reader.close()
    ok = np.isfinite(raw.value)
    b = (raw.ts[ok] - start) // every_ns
    v = raw.value[ok]
    groups = [v[b == k][:n] for k in np.unique(b)]
    return np.array([g for g in groups if len(g) == n]).reshape(-1, n)


def cmd_spc(args: argparse.Namespace) -> int:
    from analytics import capability, spc, spc_rules
    from shopfloor.config.load import load_plant_config

    cfg = load_plant_config(args.config)
    every = int(args.every_s * NS)
    base = asyncio.run(
        _values(cfg, args.asset, args.signal, _ns(args.baseline_start), _ns(args.baseline_end), every, args.n)
    )
    data = asyncio.run(_values(cfg, args.asset, args.signal, _ns(args.start), _ns(args.end), every, args.n))
    try:
        if args.chart == "imr":
            ch = spc.imr_chart(data, base).individuals
        elif args.chart in ("xbar-r", "xbar-s"):
            fn = spc.xbar_r_chart if args.chart == "xbar-r" else spc.xbar_s_chart
            ch = fn(data, base).xbar
        elif args.chart == "ewma":
            ch = None
            e = spc.ewma_chart(
                data, spc.individuals_baseline(base) if base.ndim == 1 else base, lam=args.lam, L=args.L
            )
        else:
            ch = None
            c = spc.cusum_chart(
                data, spc.individuals_baseline(base) if base.ndim == 1 else base, k=args.k, h=args.h
            )
    except ValueError as exc:
        raise SystemExit(f"analytics spc: {exc}") from exc
    out: dict[str, Any] = {
        "asset": args.asset,
        "signal": args.signal,
        "chart": args.chart,
        "points": len(data),
    }
    if ch is not None:
        rules = (
            spc_rules.nelson(ch.statistic, ch.centre, ch.sigma)
            if args.rules == "nelson"
            else (spc_rules.western_electric(ch.statistic, ch.centre, ch.sigma))
        )
        out.update(centre=ch.centre, lcl=ch.lcl, ucl=ch.ucl, out_of_control=len(ch.out_of_control))
        out["rules"] = {
            r.rule_id: {"points": int(r.indexes.size), "en": r.rule.description, "zh": r.rule.description_zh}
            for r in rules
            if r.triggered
        }
    elif args.chart == "ewma":
        out.update(centre=float(e.centre), out_of_control=len(e.out_of_control))
    else:
        out.update(signals_up=len(c.signals_up), signals_down=len(c.signals_down))
    if args.lsl is not None or args.usl is not None:
        cap = capability.capability(base, lsl=args.lsl, usl=args.usl)
        out["capability_of_baseline"] = {
            k: None if (iv := getattr(cap, k)) is None else [iv.estimate, iv.lower, iv.upper]
            for k in ("cp", "cpk", "pp", "ppk")
        }
    print(json.dumps(out, ensure_ascii=False, indent=1 if not args.json else None, default=float))
    return 0


def add_arguments(an_sub: Any, func: Any) -> None:
    p = an_sub.add_parser("spc", help="control chart of one signal against a stated baseline period")
    p.add_argument("--config", required=True)
    p.add_argument("--asset", required=True)
    p.add_argument("--signal", required=True)
    p.add_argument("--baseline-start", required=True, help="ISO 8601 with zone: the in-control period")
    p.add_argument("--baseline-end", required=True)
    p.add_argument("--start", required=True, help="ISO 8601 with zone: the period judged")
    p.add_argument("--end", required=True)
    p.add_argument("--chart", choices=["imr", "xbar-r", "xbar-s", "ewma", "cusum"], default="imr")
    p.add_argument("--every-s", type=float, default=600.0, help="bucket (individuals) or subgroup span")
    p.add_argument("--n", type=int, default=1, help="subgroup size (xbar charts): first n values per bucket")
    p.add_argument("--rules", choices=["nelson", "western-electric"], default="nelson")
    p.add_argument("--lam", type=float, default=0.2)
    p.add_argument("--L", type=float, default=3.0)
    p.add_argument("--k", type=float, default=0.5)
    p.add_argument("--h", type=float, default=5.0)
    p.add_argument("--lsl", type=float)
    p.add_argument("--usl", type=float)
    p.add_argument("--json", action="store_true", help="one line")
    p.set_defaults(func=func)
