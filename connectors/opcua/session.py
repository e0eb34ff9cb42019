"""One OPC UA connection: a fresh asyncua Client, its namespaces, node resolution, poll reads and teardown.
Never reused after loss; its subscriptions live in ``subscriptions``, its supervisor in ``supervisor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import math
from collections.abc import Callable, Sequence

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState

from connectors.opcua.config import NS0_URI, NodeRef, OpcUaSettings
from connectors.opcua.errors import describe_error
from connectors.opcua.items import Item
from connectors.opcua.security import Pki, apply_security, client_certificate_refused, identity_refused
from connectors.opcua.status_map import status_name
from connectors.opcua.subscriptions import Subscriptions

_UNREADABLE = {
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
}


class _ClosedTransportFilter(logging.Filter):
    """Drop asyncua's traceback for a Publish that failed because the transport closed.

    That is an expected outage, which the supervisor reports once through the HealthTracker; every
    other asyncua record passes unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionError) and record.getMessage().startswith("Publish iteration"))


_SESSION_LOG = logging.getLogger("asyncua.client.ua_session.UaSession")
if not any(isinstance(f, _ClosedTransportFilter) for f in _SESSION_LOG.filters):
    _SESSION_LOG.addFilter(_ClosedTransportFilter())


def namespace_missing(uri: str, namespaces: Sequence[str]) -> str:
    """Why ``uri`` cannot be resolved, listing the namespace URIs the server has (and a close one)."""
    close = difflib.get_close_matches(uri, list(namespaces), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(repr(n) for n in namespaces) or "none"
    return f"namespace {uri!r} is not on the server (it has {len(namespaces)}: {listed}){hint}"


class OpcUaSession:
    """One connection: a fresh Client, its subscriptions and poll loops. Never reused after loss."""

    def __init__(self, settings: OpcUaSettings, pki: Pki, log: logging.Logger) -> None:
        self.settings, self.pki, self.log = settings, pki, log
        self.client = Client(
            settings.endpoint,
            timeout=settings.request_timeout_s,
            watchdog_intervall=settings.watchdog_interval_s,
            auto_reconnect=False,
        )
        self.client.name = self.client.description = "Shopfloor OPC UA connector"
        self.client.product_uri = "urn:shopfloor"
        self.client.session_timeout = 60_000  # ms; a dead client's session is freed within a minute
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.namespaces: list[str] = []
        self.subscriptions = Subscriptions(self.client, settings, log, self.resolve, self.mark_lost)
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = False
        self._closed = False

    # -- connect -------------------------------------------------------------------------------
    async def open(self) -> None:
        s = self.settings
        await asyncio.wait_for(apply_security(self.client, s, self.pki, self.log), s.connect_timeout_s)
        self.client.connection_lost_callback = self._on_connection_lost
        self._opened = True
        try:
            await asyncio.wait_for(self.client.connect(), s.connect_timeout_s)
        except ua.UaStatusCodeError as exc:
            refused = identity_refused(exc, s) or client_certificate_refused(exc, s, self.pki)
            if refused is None:
                raise
            raise refused from exc
        self.namespaces = list(await self.client.get_namespace_array())

    async def _on_connection_lost(self, exc: Exception) -> None:
        self.mark_lost(f"connection lost ({describe_error(exc)})")

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    def resolve(self, ref: NodeRef) -> ua.NodeId:
        """The session's NodeId for a configured node (raises KeyError naming a missing namespace)."""
        uri = ref.uri or NS0_URI
        try:
            ns = self.namespaces.index(uri)
        except ValueError:
            raise KeyError(namespace_missing(uri, self.namespaces)) from None
        if ref.kind == "i":
            return ua.NodeId(int(ref.identifier), ns, ua.NodeIdType.Numeric)
        if ref.kind == "s":
            return ua.NodeId(ref.identifier, ns, ua.NodeIdType.String)
        if ref.kind == "g":
            import uuid

            return ua.NodeId(uuid.UUID(ref.identifier), ns, ua.NodeIdType.Guid)
        import base64

        return ua.NodeId(base64.b64decode(ref.identifier), ns, ua.NodeIdType.ByteString)

    def resolve_items(self, items: Sequence[Item]) -> None:
        for it in items:
            try:
                it.node, it.failed = self.resolve(it.ref), ""
            except (KeyError, ValueError) as exc:
                it.node, it.failed = None, f"BadNamespaceUnknown: {exc.args[0]}"

    # -- polling ---------------------------------------------------------------------------------
    async def read(self, nodes: Sequence[ua.NodeId]) -> list[ua.DataValue]:
        out: list[ua.DataValue] = []
        step = self.settings.max_items_per_request
        for start in range(0, len(nodes), step):
            params = ua.ReadParameters(
                MaxAge=0,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                NodesToRead=[
                    ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value)
                    for n in nodes[start : start + step]
                ],
            )
            out += await self.client.uaclient.read(params)
        return out

    async def check_readable(self, items: Sequence[Item]) -> None:
        """Poll mode: one read marks items the server cannot serve as failed (like CreateMonitoredItems)."""
        live = [it for it in items if it.node is not None]
        values = await self.read([it.node for it in live])  # type: ignore[misc]
        for it, dv in zip(live, values, strict=True):
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            it.failed = status_name(code) if code in _UNREADABLE else ""

    def start_polling(
        self, items: Sequence[Item], on_values: Callable[[Sequence[Item], list[ua.DataValue]], None]
    ) -> None:
        by_interval: dict[float, list[Item]] = {}
        for it in items:
            if it.node is not None and not it.failed:
                by_interval.setdefault(it.mon.poll_interval_ms, []).append(it)
        for interval, group in by_interval.items():
            self._tasks.append(asyncio.create_task(self._poll(interval / 1000, group, on_values)))

    async def _poll(
        self,
        period: float,
        items: list[Item],
        on_values: Callable[[Sequence[Item], list[ua.DataValue]], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        nodes = [it.node for it in items]
        due = loop.time()
        while not self.lost.is_set():
            try:
                values = await self.read(nodes)  # type: ignore[arg-type]
            except Exception as exc:  # any failed read ends this session; the supervisor reconnects
                self.mark_lost(f"poll read failed ({describe_error(exc)})")
                return
            on_values(items, values)
            due += period
            now = loop.time()
            if now > due:  # fell behind: skip the missed cycles rather than bunching reads
                due += math.ceil((now - due) / period) * period
            await asyncio.sleep(due - now)

    # -- teardown --------------------------------------------------------------------------------
    async def close(self) -> None:
        """Close politely when the session is up; otherwise just drop the transport (no noisy requests)."""
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if not self._opened:
            return
        c = self.client
        polite = not self.lost.is_set() and c.uaclient.state is UaClientState.CONNECTED
        # Stop the publish loop first: a pending Publish would fail (and be logged) during teardown.
        session = c.uaclient.session
        tasks = [getattr(session, "_publish_task", None)]
        if not polite:
            tasks += [
                getattr(c, name, None)
                for name in ("_renew_channel_task", "_supervisor_task", "_stale_watchdog_task")
            ]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if polite:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.disconnect(), 5)
            return
        with contextlib.suppress(Exception):
            c.disconnect_socket()
