"""Connectors: the drivers that read equipment (OPC UA, Modbus TCP, plugins) into SampleBatches.

``connectors.base`` is the small API every connector implements, built-in or third-party.
"""

from connectors.base import API_VERSION, Connector, ConnectorSpec, Sink, SourceContext
from connectors.health import HealthTracker, SourceHealth

__all__ = [
    "API_VERSION",
    "Connector",
    "ConnectorSpec",
    "HealthTracker",
    "Sink",
    "SourceContext",
    "SourceHealth",
]
