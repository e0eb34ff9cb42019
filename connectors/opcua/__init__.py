"""The OPC UA connector (asyncua): subscriptions, polling, events, security and reconnect.

Registered as ``opcua`` in the entry-point group ``shopfloor.connectors``.
"""
