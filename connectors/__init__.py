"""Connectors: OPC UA and Modbus drivers and the plugin API that stream equipment data in.

Filled in by the connectors issue; the package exists so the layout is fixed.
"""
