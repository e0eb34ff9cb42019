"""Connectors: the drivers that read equipment (OPC UA, Modbus TCP) into SampleBatches.

They implement the kernel's connector API (``shopfloor.connector``), exactly as third-party plugins do.
"""
