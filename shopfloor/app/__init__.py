"""The application layer: the command line, the acquisition service and the demo wiring.

The only code that imports every part (kernel, historian, connectors, simulator); nothing imports it.
"""
