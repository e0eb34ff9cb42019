"""How a writer delivers: batching, the on-disk spool and retries, shared by the historian writer and the
MQTT publisher (``historian:`` and ``publish:`` in the plant config), and byte sizes such as ``512MiB``.

Moved here from ``shopfloor.config.schema`` (which re-exports every name) so that config sections of
their own modules can use them without an import cycle.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    None: 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """``1073741824``, ``"1GiB"``, ``"512 MB"`` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB")
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"expected a size such as 512MiB or 2GB, got {value!r}")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _UNITS[unit])


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class WhenFull(StrEnum):
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class FsyncPolicy(StrEnum):
    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


class BatchConfig(_Model):
    max_points: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="Send when this many points are waiting."
    )
    max_age_ms: Annotated[int, Field(ge=1, le=600_000)] = Field(
        200, description="Send when the oldest waiting point is this old."
    )


class SpoolConfig(_Model):
    dir: Path = Field(Path("var/spool"), description="Directory of the on-disk spool.")
    max_bytes: int = Field(1 << 30, description="Byte bound of the spool, e.g. 1GiB.")
    segment_bytes: int = Field(8 << 20, description="Size at which a spool segment file rotates.")
    when_full: WhenFull = Field(
        WhenFull.DROP_OLDEST, description="What to drop when the bound is reached; every drop is counted."
    )
    fsync: FsyncPolicy = Field(FsyncPolicy.INTERVAL, description="When the spool is fsynced.")
    fsync_interval_ms: Annotated[int, Field(ge=10)] = 1000

    @field_validator("max_bytes", "segment_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @model_validator(mode="after")
    def _bounds(self) -> SpoolConfig:
        if self.segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4KiB")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("max_bytes must be at least twice segment_bytes")
        return self


class RetryConfig(_Model):
    initial_ms: Annotated[int, Field(ge=1)] = 200
    max_ms: Annotated[int, Field(ge=1)] = 30_000
    multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    probe_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = Field(
        1000,
        description=(
            "While the store does not answer at all, ask its health endpoint this often and resume "
            "as soon as it answers, instead of waiting out the backoff."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> RetryConfig:
        if self.max_ms < self.initial_ms:
            raise ValueError(f"max_ms ({self.max_ms}) must be at least initial_ms ({self.initial_ms})")
        return self
