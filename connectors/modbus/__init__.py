"""The built-in Modbus TCP connector (entry point ``modbus`` in group ``shopfloor.connectors``).
Its modules and what each owns are listed in connectors/modbus/README.md (Code layout).
"""

# connector: the composition (spec, life cycle); connection: the client, reconnects, loss, gaps;
# poller: the poll loops; refusals: exception 02 in merged reads; writes: guarded writes; output:
# emission and its counts; poll_plan: per-group plan and buffers; read_plan: request merging;
# decode: numpy decoding; frames: strict responses and frame checks; config; pymodbus_logs.
