"""The built-in Modbus TCP connector (entry point ``modbus`` in group ``shopfloor.connectors``).

config: settings and tag models; read_plan: request merging; decode: numpy decoding; connector: I/O.
"""
