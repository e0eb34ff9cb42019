"""Check found by benchmarks/uns.py: does the broker keep a subscriber's MQTT 5 Receive Maximum once it starts
acknowledging (paho manual acks, as uns.ingest.Ingest uses them)? Prints what arrived before and after the acks.
"""

# uns.ingest.Ingest sends a Receive Maximum at CONNECT (receive_maximum, 2000 messages); Mosquitto 2.0.11
# honours it only until the first PUBACK, then sends far past it. That is why the ingest bounds what it holds
# itself: above max_pending_points it stops reading the socket (docs/uns.md, "Bounded memory").
# Run: .venv/bin/python benchmarks/uns_receive_maximum.py [--receive-maximum 100]

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # benchmarks/uns.py would shadow uns
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from shopfloor.testing.servers import MosquittoServer  # noqa: E402


class Subscriber(aiomqtt.Client):
    """Manual acknowledgements (set before connecting, like the ingest); records (mid, qos) of arrivals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived: list[tuple[int, int]] = []
        self._client.manual_ack_set(True)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.arrived.append((message.mid, message.qos))


async def check(
    port: int, receive_maximum: int, messages: int, ack: int, topic_filter: str
) -> tuple[int, int]:
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = receive_maximum
    props.SessionExpiryInterval = 60
    sub = Subscriber("127.0.0.1", port, identifier=f"rm-sub-{ack}-{len(topic_filter)}",
                     protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props)  # fmt: skip
    async with sub:
        await sub.subscribe(topic_filter, qos=1, timeout=10)
        pub = aiomqtt.Client("127.0.0.1", port, identifier=f"rm-pub-{ack}-{len(topic_filter)}",
                             protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=0)  # fmt: skip
        async with pub:
            for i in range(messages):
                await pub.publish(f"rm/{ack}/{i % 10}", b"x", qos=1, timeout=10)
        await asyncio.sleep(1.0)  # everything the broker is willing to send has arrived
        before = len(sub.arrived)
        for mid, qos in sub.arrived[:ack]:  # acknowledge the first ones, in arrival order
            sub._client.ack(mid, qos)
        await asyncio.sleep(1.0)
        return before, len(sub.arrived)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--receive-maximum", type=int, default=100)
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    rm = args.receive_maximum
    with tempfile.TemporaryDirectory(prefix="rm-") as d:
        broker = MosquittoServer(d)
        broker.start()
        try:
            for topic_filter in ("rm/{ack}/#", "$share/g/rm/{ack}/#"):
                for ack in (1, rm // 2):
                    before, after = await check(
                        broker.port, rm, args.messages, ack, topic_filter.format(ack=ack)
                    )
                    unacked = after - ack
                    verdict = "kept" if unacked <= rm else "NOT kept"
                    print(f"receive maximum {rm}, {topic_filter.format(ack='N')}: {before} arrived unacknowledged, "
                          f"then after {ack} PUBACKs {after} had arrived ({unacked} unacknowledged): {verdict}",
                          flush=True)  # fmt: skip
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
