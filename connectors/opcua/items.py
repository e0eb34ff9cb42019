"""The configured items of an OPC UA source: one Item per tag, one EventItem per event source.
Each carries its config and its state in the current session (resolved NodeId, why it failed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import ua

from connectors.opcua.config import EventSource, Monitoring, NodeRef, OpcUaTag

EVENT_HANDLE_BASE = 1 << 30  # client handles of event items; data items use their tag index


@dataclass
class Item:
    """One configured tag and its state in the current session."""

    index: int
    tag: OpcUaTag
    ref: NodeRef
    mon: Monitoring
    text: str  # the node id as written in config (with the namespace URI filled in)
    node: ua.NodeId | None = None
    failed: str = ""  # why it is not delivering in this session ("" = ok)


@dataclass
class EventItem:
    index: int
    source: EventSource
    ref: NodeRef
    select: list[ua.SimpleAttributeOperand] = field(default_factory=list)
    failed: str = ""
