"""The simulator's state file: how far its clock has served, so that a restart never goes back.

A store writes idempotently by (series, timestamp), so a simulator that served a timestamp twice
would overwrite the first run's points with other values. The rule (docs/simulator.md, "Restarts"):
a run without an explicit ``--start`` starts at the later of *now* and one step after the newest
timestamp any earlier run may have served; the state file records that high-water mark.

Writes are ahead of serving: before a step is handed to the servers, the file must already say that
its timestamp may be served (a *reservation* a few wall seconds ahead). A crash therefore leaves a
gap of at most one reservation, never an overlap; a clean stop records the last served step exactly.
Every write is atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from plant_simulator.clock import NS
from shopfloor.files import write_atomic

DEFAULT_STATE_DIR = Path("var/state/simulator")
STATE_FILE = "state.json"
STATE_VERSION = 1


class StateError(Exception):
    """The state file cannot be read or written; the message names the file and the fix."""


@dataclass(frozen=True)
class SimState:
    """What the state file holds (JSON, one object)."""

    served_until_ns: int  # no run served a timestamp after this one; only ever grows
    last_served_ns: int  # the newest timestamp the last run had served at the write (-1: none yet)
    clean_stop: bool  # the last run stopped cleanly (served_until_ns == its last served step)
    plant: str = ""
    seed: int = 0
    updated_ns: int = 0  # wall clock of the write
    version: int = STATE_VERSION


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path) -> SimState | None:
    """The saved state, or None when there is none yet; StateError when the file is unusable."""
    path = state_path(state_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return SimState(
            served_until_ns=int(raw["served_until_ns"]),
            last_served_ns=int(raw["last_served_ns"]),
            clean_stop=bool(raw["clean_stop"]),
            plant=str(raw.get("plant", "")),
            seed=int(raw.get("seed", 0)),
            updated_ns=int(raw.get("updated_ns", 0)),
            version=int(raw.get("version", STATE_VERSION)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"cannot read the simulator state file {path} ({exc}); it records the last simulated time "
            "served, so that a restart does not serve it again: fix or delete it, or give --start"
        ) from exc


def write_state(state_dir: Path, state: SimState) -> None:
    """Atomically replace the state file (temporary file in the same directory, fsync, rename)."""
    path = state_path(state_dir)
    try:
        write_atomic(path, json.dumps(asdict(state), indent=2) + "\n")
    except OSError as exc:
        raise StateError(
            f"cannot write the simulator state file {path} ({exc}); choose a writable --state-dir"
        ) from exc


def resume_start_ns(state_dir: Path, default_ns: int) -> int:
    """Where a run without an explicit start begins: the later of ``default_ns`` (usually now) and
    one step after the newest timestamp an earlier run may have served; whole seconds."""
    start = default_ns - default_ns % NS
    saved = read_state(state_dir)
    if saved is not None:
        after = saved.served_until_ns + NS
        start = max(start, after - after % NS)
    return start


class ClockLease:
    """Reserves simulated time in the state file before it is served; records the end at ``close``.

    ``reserve(ts)`` must be awaited before a step stamped ``ts`` goes to any server: when ``ts`` is
    past (or near the end of) the current reservation, the reservation is extended by ``lease_ns``
    and written first. The high-water mark never decreases, even when an explicit ``--start``
    lies before it, so a later resumed run still starts after everything ever served.
    """

    def __init__(self, state_dir: Path, lease_ns: int, plant: str = "", seed: int = 0) -> None:
        if lease_ns < NS:
            raise ValueError("a clock lease must cover at least one step")
        self.state_dir, self.lease_ns, self.plant, self.seed = Path(state_dir), int(lease_ns), plant, seed
        saved = read_state(self.state_dir)
        self.previous: SimState | None = saved
        self._high_water = saved.served_until_ns if saved is not None else -1
        self.reserved_until_ns = -1  # reserved by this run
        self.last_served_ns = -1
        self.writes = 0
        self._lock = threading.Lock()  # a reservation still being written (thread) vs. close
        self._closed = False

    def _state(self, served_until: int, clean: bool) -> SimState:
        return SimState(
            served_until_ns=max(self._high_water, served_until),
            last_served_ns=self.last_served_ns,
            clean_stop=clean,
            plant=self.plant,
            seed=self.seed,
            updated_ns=time.time_ns(),
        )

    def needs_write(self, ts_ns: int) -> bool:
        return ts_ns + self.lease_ns // 2 > self.reserved_until_ns

    def reserve_sync(self, ts_ns: int) -> None:
        """Make sure ``ts_ns`` may be served: extend the reservation (and write it) when needed."""
        with self._lock:
            if self._closed or not self.needs_write(ts_ns):
                return  # after close nothing more is served: a late reservation must not land last
            until = ts_ns + self.lease_ns
            write_state(self.state_dir, self._state(until, clean=False))
            self.reserved_until_ns = until
            self.writes += 1

    def served(self, ts_ns: int) -> None:
        self.last_served_ns = max(self.last_served_ns, ts_ns)

    def close(self) -> None:
        """A clean stop: the state says exactly how far this run served (nothing if it served none)."""
        with self._lock:
            self._closed = True
            if self.last_served_ns < 0:
                return
            write_state(self.state_dir, self._state(self.last_served_ns, clean=True))
            self.reserved_until_ns = self.last_served_ns
            self.writes += 1
