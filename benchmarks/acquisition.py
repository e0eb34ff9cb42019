"""Benchmark: end-to-end acquisition, simulator → our connector → historian writer → real influxd.

Runs the Modbus and the OPC UA parts (each beside its bare pymodbus / asyncua baseline in the same
run): samples/s and ratio, change-to-historian latency p50/p99, and 10,000 tags on one process.
Run: .venv/bin/python benchmarks/acquisition.py [--only modbus|opcua]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["modbus", "opcua"])
    args = ap.parse_args()
    if args.only in (None, "modbus"):
        import acquisition_modbus

        print("== Modbus TCP ==", flush=True)
        asyncio.run(acquisition_modbus.run())
    if args.only in (None, "opcua"):
        import logging

        import acquisition_opcua

        print("== OPC UA ==", flush=True)
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        asyncio.run(acquisition_opcua.run())


if __name__ == "__main__":
    main()
