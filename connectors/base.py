"""Compatibility name of the connector API, which now lives in the kernel as ``shopfloor.connector``.

Plugins written against ``connectors.base`` (API 1) keep working; new code imports ``shopfloor.connector``.
"""

from shopfloor.connector import (
    API_VERSION,
    Connector,
    ConnectorSpec,
    CrossCheck,
    SettingsBase,
    Sink,
    SourceContext,
    TagBase,
)

__all__ = [
    "API_VERSION",
    "Connector",
    "ConnectorSpec",
    "CrossCheck",
    "SettingsBase",
    "Sink",
    "SourceContext",
    "TagBase",
]
