"""The subscriptions of one OPC UA session (one per publishing interval) and their monitored items.
Creates data and event items and checks each result code; detects a subscription silent past its keep-alive.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from asyncua import Client, ua
from asyncua.common.events import get_filter_from_event_type
from asyncua.common.node import Node

from connectors.opcua.config import NS0_URI, NodeRef, OpcUaSettings, parse_node_id
from connectors.opcua.errors import describe_error
from connectors.opcua.items import EVENT_HANDLE_BASE, EventItem, Item
from connectors.opcua.status_map import status_name

_TRIGGERS = {
    "status": ua.DataChangeTrigger.Status,
    "status_value": ua.DataChangeTrigger.StatusValue,
    "status_value_timestamp": ua.DataChangeTrigger.StatusValueTimestamp,
}
_DEADBANDS = {
    "none": ua.DeadbandType.None_,
    "absolute": ua.DeadbandType.Absolute,
    "percent": ua.DeadbandType.Percent,
}

PublishCallback = Callable[[ua.PublishResult], None]


class Subscriptions:
    """Subscriptions and monitored items of one session; lives and dies with that session."""

    def __init__(
        self,
        client: Client,
        settings: OpcUaSettings,
        log: logging.Logger,
        resolve: Callable[[NodeRef], ua.NodeId],
        mark_lost: Callable[[str], None],
    ) -> None:
        self.client, self.settings, self.log = client, settings, log
        self._resolve, self._mark_lost = resolve, mark_lost
        self.ids: dict[float, int] = {}  # publishing interval ms -> subscription id
        self.revised: dict[float, float] = {}
        self.keepalive_counts: dict[float, int] = {}  # requested interval ms -> revised max keep-alive count
        self._stale_after: dict[int, float] = {}
        self._last_publish: dict[int, float] = {}

    async def _create(self, interval_ms: float, callback: PublishCallback) -> int:
        if interval_ms in self.ids:
            return self.ids[interval_ms]
        keepalive = max(3, math.ceil(5000.0 / interval_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=keepalive * 10,
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )

        def on_publish(result: ua.PublishResult) -> None:
            self._last_publish[result.SubscriptionId] = time.monotonic()
            for n in result.NotificationMessage.NotificationData or ():
                if isinstance(n, ua.StatusChangeNotification) and not n.Status.is_good():
                    self._mark_lost(f"subscription status {status_name(n.Status.value)}")
                    return
            callback(result)

        res = await self.client.uaclient.create_subscription(params, on_publish)
        sid = res.SubscriptionId
        revised = float(res.RevisedPublishingInterval)
        if abs(revised - interval_ms) > 1e-6:
            self.log.info(
                "publishing interval %.0f ms revised by the server to %.0f ms", interval_ms, revised
            )
        self.ids[interval_ms] = sid
        self.revised[interval_ms] = revised
        self.keepalive_counts[interval_ms] = int(res.RevisedMaxKeepAliveCount)
        self._stale_after[sid] = (
            max(revised, 1.0) * max(int(res.RevisedMaxKeepAliveCount), 1) / 1000 * 1.5 + 2
        )
        self._last_publish[sid] = time.monotonic()
        return sid

    async def subscribe(self, items: Sequence[Item], callback: PublishCallback) -> None:
        """Create monitored items (chunked); set ``item.failed`` from each result code."""
        by_interval: dict[float, list[Item]] = {}
        for it in items:
            if it.node is not None:
                by_interval.setdefault(it.mon.publishing_interval_ms, []).append(it)
        step = self.settings.max_items_per_request
        for interval, group in by_interval.items():
            sid = await self._create(interval, callback)
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                params = ua.CreateMonitoredItemsParameters(
                    SubscriptionId=sid,
                    TimestampsToReturn=ua.TimestampsToReturn.Both,
                    ItemsToCreate=[self._request(it) for it in chunk],
                )
                results = await self.client.uaclient.create_monitored_items(params)
                for it, res in zip(chunk, results, strict=True):
                    it.failed = "" if res.StatusCode.is_good() else status_name(res.StatusCode.value)

    @staticmethod
    def _request(it: Item) -> ua.MonitoredItemCreateRequest:
        m = it.mon
        flt = None
        if m.deadband_type != "none" or m.trigger != "status_value":
            flt = ua.DataChangeFilter(
                Trigger=_TRIGGERS[m.trigger],
                DeadbandType=int(_DEADBANDS[m.deadband_type]),
                DeadbandValue=m.deadband_value if m.deadband_type != "none" else 0.0,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=it.node, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=it.index,
                SamplingInterval=m.sampling_interval_ms,
                Filter=flt,
                QueueSize=m.queue_size,
                DiscardOldest=m.discard_oldest,
            ),
        )

    async def subscribe_events(self, items: Sequence[EventItem], callback: PublishCallback) -> None:
        if not items:
            return
        sid = await self._create(self.settings.subscription.publishing_interval_ms + 0.001, callback)
        for ev in items:
            try:
                node = self._resolve(ev.ref)
                etype = self._resolve(_ref_of(ev.source.event_type))
                base = etype == ua.NodeId(ua.ObjectIds.BaseEventType)
                flt = await get_filter_from_event_type(
                    [Node(self.client.uaclient.session, etype)], where_clause_generation=not base
                )
            except (KeyError, ua.UaError) as exc:
                ev.failed = f"event type/node not usable: {describe_error(exc)}"
                continue
            ev.select = list(flt.SelectClauses)
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=sid,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.EventNotifier),
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=ua.MonitoringParameters(
                            ClientHandle=EVENT_HANDLE_BASE + ev.index,
                            SamplingInterval=0,
                            Filter=flt,
                            QueueSize=1000,
                            DiscardOldest=True,
                        ),
                    )
                ],
            )
            (res,) = await self.client.uaclient.create_monitored_items(params)
            ev.failed = "" if res.StatusCode.is_good() else status_name(res.StatusCode.value)

    def stale(self) -> str:
        """A reason if a subscription has been silent past its keep-alive, else ''."""
        now = time.monotonic()
        for sid, limit in self._stale_after.items():
            if now - self._last_publish.get(sid, now) > limit:
                return (
                    f"subscription {sid} silent for {now - self._last_publish[sid]:.1f} s (keep-alive missed)"
                )
        return ""


def _ref_of(text: str) -> NodeRef:
    ref = parse_node_id(text)
    return ref if ref.uri else NodeRef(NS0_URI, ref.kind, ref.identifier)
