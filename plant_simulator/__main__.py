"""``python -m plant_simulator``: the simulator's command line on its own.

Same options as ``shopfloor simulate``.
"""

import argparse
import sys

from plant_simulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m plant_simulator", description="Shopfloor virtual plant")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
