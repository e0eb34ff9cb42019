"""The simulator's clock: simulated time, its start instant and the speed factor against wall time.

Every value the simulator produces or serves is stamped from this clock (UTC nanoseconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

NS = 1_000_000_000
STEP_S = 1  # one model step is one simulated second
BLOCK_STEPS = 3600  # the model is computed in blocks of one simulated hour
DEFAULT_START = "2026-01-01T00:00:00Z"


def parse_start(text: str | None) -> int:
    """``2026-01-01T00:00:00Z`` (or ``now``/None) -> UTC ns, truncated to whole seconds."""
    if text is None or text == "now":
        return (time.time_ns() // NS) * NS
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS


@dataclass
class SimClock:
    """Maps wall time to simulated time: ``sim = start + first_step + speed * (wall - wall0)``."""

    start_ns: int
    speed: float = 1.0
    wall0_ns: int = field(default_factory=time.monotonic_ns)
    first_step: int = 0  # the step served when the clock starts (a plant computed ahead offline)

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 1_000_000:
            raise ValueError(f"speed must be in (0, 1e6], got {self.speed}")

    def sim_seconds(self) -> float:
        """Simulated seconds elapsed since the start."""
        return (time.monotonic_ns() - self.wall0_ns) * self.speed / NS

    def step_now(self) -> int:
        """Index of the last completed model step."""
        return self.first_step + int(self.sim_seconds())

    def ts_ns(self, step: int) -> int:
        return self.start_ns + step * STEP_S * NS
