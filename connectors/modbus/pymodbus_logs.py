"""The log filter that drops pymodbus' repeated connect/timeout/skip warnings unless it logs at DEBUG.
The connector counts each of these in its health and logs once per state change instead.
"""

from __future__ import annotations

import logging

# pymodbus logs every failed connect, every unanswered request and every skipped frame at WARNING
# or ERROR. The connector counts each of these in its health and logs once per state change, so
# these repeats are dropped unless the pymodbus logger is set to DEBUG.
_PYMODBUS_REPEATS = (
    "Failed to connect",
    "Not connected, trying to connect",
    "Cancel send, because not connected",
    "No response received",
    "Skipping",
    "Invalid Modbus protocol id",
    "Unable to decode",
    "received pdu without a corresponding request",
    "Repeating....",  # pymodbus' own stand-in for a repeat of the previous message
)


class RepeatFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        msg = str(record.msg)
        return not any(p in msg for p in _PYMODBUS_REPEATS)


def install_log_filter() -> None:
    lg = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, RepeatFilter) for f in lg.filters):
        lg.addFilter(RepeatFilter())
