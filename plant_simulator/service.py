"""The virtual plant as a service: its OPC UA and Modbus TCP servers and the clock that steps them.

The library entry point (``SimulatorService(plant, SimulatorOptions(...))``) that ``shopfloor simulate``
and the demo both use; start/stop/status like every other service. A caller that wants restarts to
continue the simulated time (never serving a timestamp twice) builds the plant with
``plant_for(cfg, seed, resume_start_ns(state_dir, now_ns()))`` and passes the same ``state_dir``
in the options.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from plant_simulator.clock import BLOCK_STEPS, NS, SimClock
from plant_simulator.online import OnlinePlant, Publisher, Sink
from plant_simulator.plant import Plant, default_plant
from plant_simulator.state import DEFAULT_STATE_DIR, ClockLease, StateError, resume_start_ns
from shopfloor.config.schema import PlantConfig

log = logging.getLogger("plant_simulator")

__all__ = [
    "DEFAULT_STATE_DIR",
    "PortUnavailable",
    "SimulatorOptions",
    "SimulatorService",
    "StateError",
    "plant_for",
    "resume_start_ns",
]

LEASE_WALL_S = 10.0  # the state file reserves this many wall seconds of simulated time ahead


class PortUnavailable(OSError):
    """A server cannot listen on its port (taken by another process, or not allowed)."""

    def __init__(self, protocol: str, host: str, port: int, reason: str, in_use: bool) -> None:
        super().__init__(f"{protocol} port {port} on {host} {reason}")
        self.protocol, self.host, self.port, self.reason, self.in_use = protocol, host, port, reason, in_use


def check_port(protocol: str, host: str, port: int) -> None:
    """Raise PortUnavailable unless ``host:port`` can be listened on now (as asyncio would bind it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise PortUnavailable(protocol, host, port, f"cannot be resolved ({exc})", False) from exc
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server
            try:
                sock.bind(addr)
            except OSError as exc:
                raise _unavailable(protocol, host, port, exc) from exc


def _unavailable(protocol: str, host: str, port: int, exc: OSError) -> PortUnavailable:
    if exc.errno == errno.EADDRINUSE:
        return PortUnavailable(protocol, host, port, "is already in use", True)
    return PortUnavailable(protocol, host, port, f"cannot be listened on ({exc.strerror or exc})", False)


class _DropStartTraceback(logging.Filter):
    """While the service starts, asyncua's own traceback for a failed listen is replaced by our error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "error starting server" not in record.getMessage()


SECURITY_MODES: dict[str, tuple[str, ...]] = {
    "none": (),
    "sign": ("Sign",),
    "sign-and-encrypt": ("SignAndEncrypt",),
    "both": ("Sign", "SignAndEncrypt"),
}


@dataclass(frozen=True)
class SimulatorOptions:
    """How the virtual plant is served. A port of 0 leaves that protocol out."""

    speed: float = 1.0  # simulated seconds per wall second
    host: str = "127.0.0.1"
    opcua_port: int = 4840
    modbus_port: int = 5020
    tick_s: float = 0.5  # wall seconds between publications
    opcua_security: str = "none"  # a key of SECURITY_MODES
    opcua_policies: tuple[str, ...] = ("Basic256Sha256",)
    opcua_cert_dir: Path = Path("var/simulator-pki")
    opcua_user: str | None = None
    opcua_password: str | None = field(default=None, repr=False)  # from the environment, never argv
    opcua_user_certs: tuple[Path, ...] = ()
    opcua_trust_dir: Path | None = None  # trusted client certificates; default <opcua_cert_dir>/trusted
    # where the simulated time served so far is kept (state.json); None keeps no state
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 1000:
            raise ValueError(
                f"speed must be between 1 and 1000 simulated seconds per second, got {self.speed:g}"
            )
        if self.opcua_security not in SECURITY_MODES:
            raise ValueError(
                f"unknown OPC UA security {self.opcua_security!r}: expected {', '.join(SECURITY_MODES)}"
            )
        if self.opcua_user and not self.opcua_password:
            raise ValueError("an OPC UA user needs its password (from the environment)")
        if self.opcua_security == "none" and self.opcua_user_certs:
            raise ValueError("X.509 user certificates need OPC UA security sign/sign-and-encrypt/both")


def plant_for(
    cfg: PlantConfig | None,
    seed: int = 0,
    start_ns: int | None = None,
    sensor_fault_interval_days: float = 10.0,
) -> Plant:
    """The model of ``cfg``'s assets (those of a kind the simulator knows), or the default demo plant."""
    kw = {"sensor_fault_interval_days": sensor_fault_interval_days}
    if cfg is None:
        return default_plant(seed=seed, start_ns=start_ns, **kw)
    from plant_simulator.from_config import assets_from_config

    return Plant(assets_from_config(cfg), seed=seed, start_ns=start_ns, name=cfg.name, site=cfg.site, **kw)


class SimulatorService:
    """Serves ``plant`` over OPC UA and/or Modbus TCP, stepping it on its own simulated clock."""

    name = "simulator"

    def __init__(self, plant: Plant, options: SimulatorOptions) -> None:
        self.plant, self.options = plant, options
        self.publisher: Publisher | None = None
        self.online: OnlinePlant | None = None
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    def trip(self, path: str, seconds: float) -> None:
        """Force ``path`` down with its alarm on for ``seconds`` of simulated time, from the step now served
        (the OPC UA method ``Trip`` of every asset calls this)."""
        if self.online is None or self.publisher is None:
            raise RuntimeError("the simulator is not serving")
        self.online.trip(path, self.publisher.clock.step_now() + max(1, round(seconds)))

    async def start(self) -> None:
        """Bind the servers (PortUnavailable if a port is taken) and start publishing; returns once
        serving. The first model step is published before any server listens, so no client ever
        reads a variable or register that has no real value yet."""
        o, plant = self.options, self.plant
        ports = [("OPC UA", o.opcua_port), ("Modbus TCP", o.modbus_port)]
        for protocol, port in ports:
            if port:
                check_port(protocol, o.host, port)
        lease = self._lease()
        online = self.online = OnlinePlant(plant)
        first = plant.next_block * BLOCK_STEPS  # 0, or after the hours a back-fill computed already
        await online.column(first)  # compute the first block before anything listens
        sinks: list[Sink] = []
        quiet = _DropStartTraceback()
        asyncua_log = logging.getLogger("asyncua.server.server")
        asyncua_log.addFilter(quiet)
        try:
            mb = ua_srv = None
            if o.modbus_port:
                from plant_simulator.modbus_server import SimModbusServer
                from plant_simulator.register_map import build_register_map

                mb = SimModbusServer(
                    build_register_map({p: plant.signals(p) for p in plant.assets}), o.host, o.modbus_port
                )
                sinks.append(mb)
            if o.opcua_port:
                from plant_simulator.opcua_server import OpcUaSecurity, SimOpcUaServer

                security = OpcUaSecurity(
                    SECURITY_MODES[o.opcua_security],
                    o.opcua_cert_dir,
                    o.opcua_user,
                    o.opcua_password,
                    o.opcua_policies,
                    o.opcua_user_certs,
                    o.opcua_trust_dir,
                )
                ua_srv = SimOpcUaServer(
                    {p: plant.signals(p) for p in plant.assets},
                    o.host,
                    o.opcua_port,
                    security,
                    {p: rt.model.description for p, rt in plant.assets.items()},
                    on_trip=self.trip,
                )
                self._stack.push_async_callback(ua_srv.stop)
                await ua_srv.setup()
                sinks.append(ua_srv)
            self.publisher = Publisher(
                online, SimClock(plant.start_ns, o.speed, first_step=first), sinks, o.tick_s, lease
            )
            await self.publisher.publish_step(first)
            if mb is not None:
                try:
                    await mb.start()
                except RuntimeError as exc:  # pymodbus: "Could not start listen" (after its own warning)
                    raise PortUnavailable(
                        "Modbus TCP", o.host, o.modbus_port, "cannot be listened on", False
                    ) from exc
                self._stack.push_async_callback(mb.stop)
            if ua_srv is not None:
                try:
                    await ua_srv.start()
                except OSError as exc:
                    raise _unavailable("OPC UA", o.host, o.opcua_port, exc) from exc
        except BaseException:
            self.publisher = None
            await self._stack.aclose()
            self._stack = contextlib.AsyncExitStack()
            raise
        finally:
            asyncua_log.removeFilter(quiet)
        # the first step is now, when serving begins
        self.publisher.clock = SimClock(plant.start_ns, o.speed, first_step=first)
        self._task = asyncio.create_task(self.publisher.run(), name="plant-simulator")
        log.info(
            "simulating %d assets at %gx from %s: OPC UA %s, Modbus TCP %s",
            len(plant.assets),
            o.speed,
            _utc(plant.start_ns),
            f"{o.host}:{o.opcua_port}" if o.opcua_port else "off",
            f"{o.host}:{o.modbus_port}" if o.modbus_port else "off",
        )

    def _lease(self) -> ClockLease | None:
        """The state file's reservation of simulated time (None without a state dir)."""
        o, plant = self.options, self.plant
        if o.state_dir is None:
            return None
        lease = ClockLease(
            o.state_dir, max(NS, int(LEASE_WALL_S * o.speed * NS)), plant=plant.name, seed=plant.seed
        )
        prev = lease.previous
        if prev is not None and plant.start_ns <= prev.served_until_ns:
            log.warning(
                "simulated start %s is at or before %s, the newest time an earlier run may have served "
                "(%s): a store that already holds those points gets them overwritten with other values; "
                "without --start the simulator resumes after it",
                _utc(plant.start_ns),
                _utc(prev.served_until_ns),
                Path(o.state_dir) / "state.json",
            )
        return lease

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.publisher is not None and self.publisher.lease is not None:
            try:
                await asyncio.to_thread(self.publisher.lease.close)
            except StateError as exc:
                log.error("%s", exc)
        await self._stack.aclose()

    def status(self) -> str | None:
        if self.publisher is None:
            return None
        pub = self.publisher
        at = f" at {_utc(pub.last_ts_ns)}" if pub.last_ts_ns >= 0 else ""
        return f"simulator: step {pub.last_step}{at}, {pub.published} published"


def _utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
