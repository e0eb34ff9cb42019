"""ModbusConnector: the composition of one Modbus TCP source (its ConnectorSpec, life cycle and describe()).
The connection lives in ``connection``, the poll loops in ``poller``, writes in ``writes``, emission in ``output``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from connectors.modbus.config import ModbusSettings, ModbusTag, check_groups
from connectors.modbus.connection import ModbusConnection
from connectors.modbus.output import Output
from connectors.modbus.poll_plan import PollGroup, status_lut
from connectors.modbus.poller import GroupPoller
from connectors.modbus.pymodbus_logs import install_log_filter
from connectors.modbus.read_plan import PlanLimits
from connectors.modbus.writes import GuardedWriter
from shopfloor.connector import Connector, ConnectorSpec, Sink, SourceContext


class ModbusConnector(Connector[ModbusSettings, ModbusTag]):
    """Polls registers, coils and discrete inputs of one Modbus TCP device; read-only unless a tag
    says ``writable: true`` and :meth:`write` is called.
    """

    spec = ConnectorSpec(
        name="modbus",
        settings_model=ModbusSettings,
        tag_model=ModbusTag,
        description="Modbus TCP (pymodbus): polling groups, merged reads, per-tag byte/word order",
        check=check_groups,
    )

    def __init__(self, ctx: SourceContext[ModbusSettings, ModbusTag]) -> None:
        super().__init__(ctx)
        s = ctx.settings
        by_group: dict[str, list[ModbusTag]] = {g: [] for g in s.groups}
        for i, t in enumerate(ctx.tags):
            g = t.group or s.default_group
            if g not in by_group:
                raise ValueError(
                    f"source {ctx.name!r}: tag {i} ({t.asset} {t.signal}) names group {g!r}; "
                    f"the settings define groups {', '.join(s.groups)}"
                )
            by_group[g].append(t)
        limits = PlanLimits(
            s.max_registers_per_request, s.max_bits_per_request, s.gap_fill_registers, s.gap_fill_bits
        )
        self.output = Output(self.tracker)
        self.connection = ModbusConnection(
            ctx.name, s, self.tracker, self.output, (), sorted({t.asset for t in ctx.tags}), ctx.log
        )
        lut = status_lut(s.status_good, s.status_uncertain)
        self.pollers = [
            GroupPoller(
                ctx.name, g, s.groups[g], tags, limits, self.connection, self.output, self.tracker, lut
            )
            for g, tags in by_group.items()
            if tags
        ]
        self.connection.keys = tuple(k for p in self.pollers for k in p.group.keys)
        self.writer = GuardedWriter(ctx.name, ctx.tags, self.connection)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def groups(self) -> list[PollGroup]:
        return [p.group for p in self.pollers]

    @property
    def connect_attempts(self) -> int:
        return self.connection.connect_attempts

    @property
    def writes_sent(self) -> int:
        return self.writer.writes_sent

    # -- life cycle ------------------------------------------------------------------------------
    async def start(self, sink: Sink) -> None:
        install_log_filter()
        self.output.sink = sink
        self.connection.open()
        name = self.ctx.name
        self._tasks = [self.spawn(self.connection.run(), f"modbus-{name}-connection")]
        self._tasks += [self.spawn(p.run(), f"modbus-{name}-{p.group.name}") for p in self.pollers]

    async def stop(self) -> None:
        """Let running polls finish and emit (bounded by the request timeout), then close."""
        if not self._tasks:
            self.tracker.on_stopped()
            return
        self.connection.stopping.set()
        s = self.ctx.settings
        longest = max((len(g.requests) for g in self.groups), default=1)
        bound = s.timeout_s * (s.retries + 1) * max(1, longest)
        _, pending = await asyncio.wait(self._tasks, timeout=min(bound, 30.0) + 1.0)
        for t in pending:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self.connection.close()
        self.tracker.on_stopped()

    def describe(self) -> dict[str, Any]:
        s = self.ctx.settings
        return {
            "endpoint": f"{s.host}:{s.port}",
            "groups": {
                p.group.name: {
                    "interval_s": p.group.interval_s,
                    "tags": len(p.group.tags) + len(p.group.strings),
                    "requests_per_poll": len(p.group.sent),
                    "registers_per_poll": sum(r.count for r in sent if not r.is_bits),
                    "bits_per_poll": sum(r.count for r in sent if r.is_bits),
                    "polls": p.group.polls,
                    "overruns": p.group.overruns,
                    "mean_poll_ms": 1000 * p.group.busy_s / p.group.polls if p.group.polls else None,
                    "refused": p.refusals.refused(),  # range -> its tags (exception 02; not polled)
                    "isolating_reads": p.refusals.searches,
                }
                for p in self.pollers
                for sent in ([p.group.requests[k] for k in p.group.sent],)
            },
            "connect_attempts": self.connect_attempts,
            "probes": {
                "sent": self.connection.probes,
                "refused": self.connection.probes_refused,
                "early_attempts": self.connection.early_attempts,
            },
            "samples": self.output.quality_counts(),  # health().samples split by quality
            "writes_sent": self.writes_sent,
        }

    # -- writing ---------------------------------------------------------------------------------
    async def write(self, tag: ModbusTag | tuple[str, str], value: float) -> None:
        """Write ``value`` to a ``writable: true`` tag (see :class:`GuardedWriter`); PermissionError otherwise."""
        await self.writer.write(tag, value)
