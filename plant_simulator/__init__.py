"""The virtual plant: simulated equipment served over real OPC UA and Modbus TCP.

Filled in by the simulator issue; the package exists so the layout is fixed.
"""
