"""Log levels of the libraries underneath: WARNING and above unless a person asks for more.

asyncua alone logs about seven INFO lines per reconnect attempt; Shopfloor's own lines say it once.
"""

from __future__ import annotations

import logging

LIBRARY_LOGGERS = ("asyncua", "pymodbus", "urllib3", "influxdb_client")


def quiet_library_logs(verbose: bool = False) -> None:
    """Put the libraries' loggers at WARNING, unless ``verbose`` or the root logger is at DEBUG."""
    if verbose or logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level < logging.WARNING:  # NOTSET included; a level someone set higher stays
            lg.setLevel(logging.WARNING)
