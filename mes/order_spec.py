"""What a work order is when it arrives from outside (API, CSV, B2MML), and what we report back per order.

Plain validated records; the repository turns them into rows, the importers and exporters into documents.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ORDER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,63}$")


class OrderStatus(StrEnum):
    PLANNED = "planned"
    RELEASED = "released"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


#: Allowed transitions; anything else is refused with the current and requested status named.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PLANNED: frozenset({OrderStatus.RELEASED, OrderStatus.CANCELLED}),
    OrderStatus.RELEASED: frozenset({OrderStatus.RUNNING, OrderStatus.PLANNED, OrderStatus.CANCELLED}),
    OrderStatus.RUNNING: frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


def _aware(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    if v.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2026-12-01T08:00:00+08:00 or ...Z)")
    return v.astimezone(UTC)


class OrderSpec(BaseModel):
    """A work order to make ``quantity`` of ``product`` on ``asset`` (an asset path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Order number, unique in the plant (the ERP's, usually).")
    product: str = Field(min_length=1, max_length=64)
    asset: str = Field(description="Asset path where the order runs.")
    quantity: Annotated[float, Field(gt=0, le=1e12)]
    unit: str = Field("units", max_length=32)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    description: str = Field("", max_length=500)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ORDER_ID_RE.match(v):
            raise ValueError(
                "order ids are 1-64 characters: letters, digits and _ . : / -, starting with a letter or digit"
            )
        return v

    _times = field_validator("planned_start", "planned_end")(lambda cls, v: _aware(v))

    @model_validator(mode="after")
    def _order(self) -> OrderSpec:
        if self.planned_start and self.planned_end and self.planned_end <= self.planned_start:
            raise ValueError("planned_end must be after planned_start")
        return self


class OrderPerformance(BaseModel):
    """What one order actually produced (the B2MML ProductionPerformance export reads these)."""

    model_config = ConfigDict(frozen=True)

    id: str
    product: str
    asset: str
    status: OrderStatus
    quantity: float
    unit: str = "units"
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    total: float = 0.0
    good: float = 0.0
    scrap: float = 0.0
    rework: float = 0.0
    energy_kwh: float = 0.0
