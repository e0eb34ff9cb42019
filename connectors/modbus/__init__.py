"""The built-in Modbus TCP connector (entry point ``modbus`` in group ``shopfloor.connectors``).

config: settings and tag models; read_plan: request merging; decode: numpy decoding; poll_plan: the
per-group plan and buffers; frames: strict responses and frame checks; pymodbus_logs: log filter;
connector: I/O.
"""
