"""The ``dashboard:`` section of the plant config: where it listens, who may log in, how fresh is fresh.

Passwords live hashed in the users file; the session key in its own file (both made on first use).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DashboardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. Loopback by default; put a TLS proxy in front to serve a network.",
    )
    port: int = Field(8050, ge=1, le=65535)
    users_file: str = Field(
        "var/dashboard/users.json",
        description="Users, roles (viewer, engineer, admin) and scrypt password hashes; "
        "managed with `shopfloor dashboard user`.",
    )
    secret_key_file: str = Field(
        "var/dashboard/session.key",
        description="Key that signs session cookies; created (mode 600) if missing.",
    )
    secure_cookies: bool = Field(
        True,
        description="Session cookies only over HTTPS (browsers treat http://127.0.0.1 and localhost as "
        "secure). Turn off only to serve plain HTTP to other hosts on a network you trust.",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="A login lasts this long.")
    refresh_s: float = Field(2.0, ge=0.5, le=60, description="Live pages update this often.")
    stale_after: int = Field(
        5,
        ge=1,
        le=1000,
        description="A source with no new data for this many refresh intervals is shown as stale.",
    )
    clock: Literal["wall", "data"] = Field(
        "wall",
        description="'wall': now is the wall clock (a real plant). 'data': now is the newest sample "
        "(a simulator running faster than real time), and the plant is stale if that stops advancing.",
    )
    language: Literal["en", "zh"] = Field("en", description="Language until a user switches.")
    threads: int = Field(8, ge=1, le=64, description="WSGI worker threads.")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "/" in v:
            raise ValueError("host is an address or name to bind, e.g. 127.0.0.1 or 0.0.0.0")
        return v
