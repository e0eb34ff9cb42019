"""The ``shopfloor analytics`` command line: its arguments only, so building the parser stays light.

The commands themselves (and scikit-learn) are imported when one runs: ``analytics_cli`` and friends.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from analytics.features import SHAPE

DEFAULT_CACHE = Path("var/analytics/sim")
HEALTHY_DAYS = 5.0  # analytics.pdm.HEALTHY_DAYS (kept equal by a test)


def add_arguments(sub: Any, func: Any) -> None:
    an = sub.add_parser("analytics", help="predictive maintenance: train, evaluate, run live")
    an_sub = an.add_subparsers(dest="analytics_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--window-s", type=float, default=3600.0, help="feature window (default 3600 s)")
        p.add_argument("--features", help=f"comma list from {', '.join(SHAPE)} (default mean,std)")
        p.add_argument("--cache", default=str(DEFAULT_CACHE), help="where simulator runs are kept")
        p.add_argument("--days", type=float, default=120.0, help="simulated days per seed")
        p.add_argument("--data", help="a plant's history: DIR/samples.(csv|parquet) and DIR/maintenance.csv")
        p.add_argument(
            "--map", help="YAML signal maps by kind or asset (state, running, ignore, rename, units)"
        )
        p.add_argument("--step-s", type=float, help="grid step for --data (default: median sample spacing)")
        p.add_argument("--train", help="--data: comma list of assets to train on (default: logged failures)")
        p.add_argument("--healthy-days", type=float, default=HEALTHY_DAYS)
        p.set_defaults(func=func)

    tr = an_sub.add_parser("train", help="train and save models (simulator seeds or --data)")
    common(tr)
    tr.add_argument("--seeds", default="1,2,3", help="simulator seeds (default 1,2,3)")
    tr.add_argument("--out", default="var/analytics/models.npz")
    ev = an_sub.add_parser("evaluate", help="train, score held-out data blind, write the report")
    common(ev)
    ev.add_argument("--train-seeds", default="1,2,3")
    ev.add_argument("--test-seeds", default="11,12,13")
    ev.add_argument("--out", default="var/analytics/evaluation")
    run = an_sub.add_parser(
        "run", help="score the live plant: health, RUL and alerts to the historian and MES"
    )
    run.add_argument("--config", required=True)
    run.add_argument("--models", default="var/analytics/models.npz")
    run.add_argument("--every-s", type=float, default=60.0, help="scoring interval in wall seconds")
    run.add_argument("--lookback-days", type=float, default=14.0)
    run.add_argument("--healthy-days", type=float, default=HEALTHY_DAYS)
    run.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: run until stopped)"
    )
    run.set_defaults(func=func)
    from shopfloor.app import analytics_spc, analytics_surface

    analytics_spc.add_arguments(an_sub, func)
    analytics_surface.add_arguments(an_sub, func)
