"""An MQTT 5 subscriber connection with manual acknowledgements, for consumers that acknowledge a message only
once it is safe (the central ingest, the MQTT source connector), with read pausing for back-pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho


class ManualAckClient(aiomqtt.Client):
    """aiomqtt's client (connection, TLS, paho's socket on the asyncio loop) with manual acknowledgements:
    paho sends no PUBACK until ``ack`` is called. Received messages go straight to ``sink`` on the loop's
    thread (aiomqtt's own queue is bypassed: it keeps neither the DUP flag, the retain flag nor a topic that
    is not UTF-8). ``number`` tells connections apart: a PUBACK is only valid on the one its message came on."""

    def __init__(self, number: int, sink: Callable[[ManualAckClient, paho.MQTTMessage], None], *args: Any,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.number = number
        self.session_present = False
        self._sink = sink
        self._client.manual_ack_set(True)  # before connect: a resumed session delivers right after CONNACK
        self._fd: int | None = None  # the socket, while open
        self._paused = False

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any = None
    ) -> None:
        self.session_present = bool(getattr(flags, "session_present", False))
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._sink(self, message)  # on the loop's thread: paho reads the socket from the asyncio loop

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._fd = sock.fileno()
        self._paused = False

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._fd = None  # never resume reading a closed (or reused) descriptor
        super()._on_socket_close(client, userdata, sock)

    def pause_reading(self) -> None:
        """Stop reading the socket (back-pressure on the broker through TCP); the connection stays."""
        fd = self._fd
        if fd is not None and not self._paused:
            self._loop.remove_reader(fd)
            self._paused = True

    def resume_reading(self) -> None:
        fd = self._fd
        if fd is not None and self._paused:
            self._paused = False
            self._loop.add_reader(fd, self._read)

    def _read(self) -> None:
        """What aiomqtt's own socket reader does: read packets (all that TLS has decoded), end on an error."""
        try:
            while True:
                self._client.loop_read()
                sock = self._client._sock  # TLS may hold decoded bytes the selector cannot see
                if sock is None or not (hasattr(sock, "pending") and sock.pending() > 0):
                    break
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def publish_nowait(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Queue a message without waiting for its acknowledgement (a Sparkplug rebirth request, a STATE);
        a lost connection just drops it."""
        self._client.publish(topic, payload, qos, retain)

    def ack(self, mid: int, qos: int) -> bool:
        """Queue the PUBACK (QoS 1) or PUBCOMP (QoS 2) of one message; False when not connected."""
        return self._client.ack(mid, qos) == paho.MQTT_ERR_SUCCESS

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()


async def until_lost(conn: aiomqtt.Client) -> None:
    """Ends when the connection does: aiomqtt's message iterator raises once it is lost."""
    with contextlib.suppress(aiomqtt.MqttError):
        async for _ in conn.messages:
            pass


async def first(*aws: Any) -> int:
    """Wait for the first of ``aws`` to finish, cancel the others; its index."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(i for i, t in enumerate(tasks) if t in done)
    finally:
        for t in tasks:
            await cancel(t)


async def cancel(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait for it, whatever it ends with."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
