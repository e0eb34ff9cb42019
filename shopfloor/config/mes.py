"""The ``mes:`` section of the plant config: which signals mean state, counts and energy, the reason tree,
shifts, products, lot rules, the MES database and its API.

Nothing here knows a particular plant: every signal name and code comes from the user's file.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shopfloor.secrets import literal_secret_message, refuse_literal_secrets

MES_SECRET_KEYS = ("password", "token", "tokens")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def _check_id(v: str) -> str:
    if not _ID_RE.match(v):
        raise ValueError(
            "ids are 1-64 lower-case letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return v


class StateName(StrEnum):
    """The state categories a PLC state code can map to (see mes.losses.StateCategory)."""

    running = "running"
    idle = "idle"
    setup = "setup"
    starved = "starved"
    blocked = "blocked"
    down = "down"
    planned_maintenance = "planned_maintenance"


class LossName(StrEnum):
    """Loss classes a reason can belong to (see mes.losses.Loss)."""

    breakdown = "breakdown"
    setup = "setup"
    unplanned_stop = "unplanned_stop"
    minor_stop = "minor_stop"
    planned_downtime = "planned_downtime"


class ReasonConfig(_Model):
    """One node of the downtime reason tree."""

    id: str = Field(description="Stable reason id, e.g. electrical_fault.")
    en: str = Field(description="English label.")
    zh: str = Field(description="Simplified Chinese label (see the glossary).")
    parent: str | None = Field(None, description="Id of the parent node; None for a top-level group.")
    loss: LossName | None = Field(
        None, description="Loss class of stops with this reason; inherited from the parent when unset."
    )
    codes: list[int] = Field(
        default_factory=list,
        description="PLC reason codes that mean this reason (the asset's reason signal).",
    )

    _id = field_validator("id")(lambda cls, v: _check_id(v))


def default_reasons() -> list[ReasonConfig]:
    """A generic reason tree grouped by the six big losses; plants add their PLC codes in their config."""
    r = ReasonConfig
    return [
        r(id="equipment_failure", en="Equipment failure", zh="设备故障", loss=LossName.breakdown),
        r(id="mechanical_failure", en="Mechanical failure", zh="机械故障", parent="equipment_failure"),
        r(id="electrical_fault", en="Electrical fault", zh="电气故障", parent="equipment_failure"),
        r(id="tool_breakage", en="Tool breakage", zh="断刀", parent="equipment_failure"),
        r(id="setup_adjustment", en="Setup and adjustment", zh="换型调机", loss=LossName.setup),
        r(id="product_changeover", en="Product changeover", zh="换型", parent="setup_adjustment"),
        r(id="tool_change", en="Tool change", zh="换刀", parent="setup_adjustment"),
        r(id="consumable_change", en="Consumable change", zh="更换耗材", parent="setup_adjustment"),
        r(id="minor_stops", en="Idling and minor stops", zh="空转与短暂停机", loss=LossName.minor_stop),
        r(id="minor_stop", en="Minor stop", zh="短暂停机", parent="minor_stops"),
        r(id="material_jam", en="Material jam", zh="卡料", parent="minor_stops"),
        r(id="external", en="External stops", zh="外部原因停机", loss=LossName.unplanned_stop),
        r(id="starved", en="Starved (no material)", zh="待料", parent="external"),
        r(id="blocked", en="Blocked (downstream full)", zh="堵料", parent="external"),
        r(id="idle", en="Idle (no order)", zh="待机", parent="external"),
        r(id="planned", en="Planned downtime", zh="计划停机", loss=LossName.planned_downtime),
        r(id="planned_maintenance", en="Planned maintenance", zh="计划维护", parent="planned"),
        r(id="break", en="Break", zh="休息", parent="planned"),
    ]


def default_state_codes() -> dict[int, StateName]:
    """The default state-code table (1 running .. 7 planned maintenance); override it per plant or asset."""
    return {
        1: StateName.running,
        2: StateName.idle,
        3: StateName.setup,
        4: StateName.starved,
        5: StateName.blocked,
        6: StateName.down,
        7: StateName.planned_maintenance,
    }


def _parse_hhmm(v: Any) -> time:
    if isinstance(v, time):
        return v
    if isinstance(v, int) and not isinstance(v, bool):  # YAML 1.1 reads 08:00 as a sexagesimal int
        return time(v // 60 % 24, v % 60)
    m = re.match(r"^(\d{1,2}):(\d{2})$", str(v))
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        raise ValueError(f"expected a time of day HH:MM, got {v!r}")
    h, mi = int(m.group(1)), int(m.group(2))
    return time(0, 0) if h == 24 else time(h, mi)


def _every_day() -> list[Weekday]:
    return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class TimeRangeConfig(_Model):
    """A daily range in the plant's time zone; ``end`` at or before ``start`` runs past midnight."""

    name: str
    start: time
    end: time
    days: list[Weekday] = Field(default_factory=_every_day, description="Weekdays on which the range starts.")

    _times = field_validator("start", "end", mode="before")(lambda cls, v: _parse_hhmm(v))


class CountersConfig(_Model):
    """Counter signals of an asset (monotonic totals; a decrease is read as a counter reset)."""

    total: str | None = Field(None, description="Units produced (good + scrap + rework).")
    good: str | None = Field(None, description="Good units; when unset, good = total - scrap - rework.")
    scrap: str | None = Field(None, description="Units scrapped.")
    rework: str | None = Field(None, description="Units sent to rework.")
    unit: str = Field("units", description="What one unit is: parts, coils, billets, heats ...")


class MesAssetConfig(_Model):
    """Which signals of one asset the MES derives its facts from."""

    path: str
    state: str = Field("state", description="Signal carrying the PLC state code.")
    state_codes: dict[int, StateName] | None = Field(
        None, description="This asset's state-code table; the plant's mes.state_codes when unset."
    )
    reason: str | None = Field(None, description="Signal carrying the PLC's reason code while stopped.")
    counters: CountersConfig = CountersConfig()
    energy: str | None = Field(None, description="Active-energy counter signal, kWh.")
    mass: str | None = Field(None, description="Counter of mass produced (for energy per tonne).")
    mass_unit: Literal["kg", "t"] = "kg"
    ideal_cycle_s: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Ideal time per unit when no order's product says otherwise."
    )
    ideal_rate_per_h: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Ideal units per hour (the alternative to ideal_cycle_s)."
    )

    @model_validator(mode="after")
    def _one_ideal(self) -> MesAssetConfig:
        if self.ideal_cycle_s is not None and self.ideal_rate_per_h is not None:
            raise ValueError("give ideal_cycle_s or ideal_rate_per_h, not both")
        return self

    @property
    def ideal_s(self) -> float | None:
        if self.ideal_cycle_s is not None:
            return self.ideal_cycle_s
        if self.ideal_rate_per_h is not None:
            return 3600.0 / self.ideal_rate_per_h
        return None

    def signals(self) -> list[str]:
        """Every signal this mapping names, once."""
        names = [self.state, self.reason, self.energy, self.mass]
        c = self.counters
        names += [c.total, c.good, c.scrap, c.rework]
        return list(dict.fromkeys(n for n in names if n))


class ProductConfig(_Model):
    """A product (or alloy and gauge) and its ideal cycle time per asset."""

    id: str
    name: str = ""
    name_zh: str = ""
    alloy: str = ""
    ideal_cycle_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Asset path -> ideal seconds per unit of this product."
    )

    _id = field_validator("id")(lambda cls, v: _check_id(v))


class LotRuleConfig(_Model):
    """How an asset's counters become lots: every increment of ``counter`` closes one lot (or ``pieces``)."""

    asset: str
    kind: str = Field(description="Lot kind, e.g. melt, cast, coil, billet, part.")
    counter: str = Field(description="Counter signal; each increment is one finished lot (or set of pieces).")
    quantity: str | None = Field(
        None, description="Counter signal whose increase over the lot is its quantity (e.g. weight)."
    )
    quantity_unit: str = "units"
    pieces: Annotated[int, Field(ge=1, le=1000)] = Field(
        1, description="Lots produced per increment (a slitter cutting a coil into strips: split)."
    )
    inputs: list[str] = Field(
        default_factory=list, description="Upstream assets whose finished lots this asset consumes."
    )
    consume: Literal["one", "each", "all", "quantity"] = Field(
        "one",
        description="Per increment, take the oldest waiting lot of all the inputs ('one': parallel machines "
        "feeding a station), the oldest of each input ('each': an assembly of different parts), every "
        "waiting one ('all': a batch furnace charging a stack, a merge), or draw this lot's quantity from "
        "the waiting lots oldest first ('quantity': a melt cast into many coils, a coil spanning two melts).",
    )
    reject: str | None = Field(
        None, description="Counter of rejected units; a reject marks the lot it falls in as failed."
    )
    serial_prefix: str = Field("", description="Prefix of generated lot ids; the asset name when empty.")


class ApiConfig(_Model):
    """The MES HTTP API."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless you mean to expose it.")
    port: Annotated[int, Field(ge=0, le=65535)] = 8710
    tokens_env: str | None = Field(
        "SHOPFLOOR_MES_TOKENS", description="Env var holding 'name:token' pairs, comma-separated."
    )
    tokens_file: Path | None = Field(None, description="File of 'name:token' lines (or name:sha256:HEX).")
    max_body_bytes: Annotated[int, Field(ge=1024)] = 2 << 20


class MesConfig(_Model):
    """The MES: its database, what it derives from which signals, and how it is reached."""

    database: str = Field(
        "sqlite:///var/mes/mes.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host:port/db.",
    )
    password_env: str | None = Field(None, description="Env var holding the database password.")
    password_file: Path | None = Field(None, description="File holding the database password.")
    bucket_s: Annotated[int, Field(ge=1, le=3600)] = Field(
        60, description="Resolution of production counts (seconds per count bucket)."
    )
    micro_stop_s: Annotated[float, Field(ge=0)] = Field(
        120.0, description="Unplanned stops shorter than this are micro-stops (a performance loss)."
    )
    state_codes: dict[int, StateName] = Field(default_factory=default_state_codes)
    reasons: list[ReasonConfig] = Field(default_factory=default_reasons)
    shifts: list[TimeRangeConfig] = Field(
        default_factory=list, description="Shift calendar; none means every hour is scheduled."
    )
    planned_stops: list[TimeRangeConfig] = Field(
        default_factory=list, description="Breaks and other planned stops inside shifts."
    )
    assets: list[MesAssetConfig] = Field(default_factory=list)
    products: list[ProductConfig] = Field(default_factory=list)
    lots: list[LotRuleConfig] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    catch_up_days: Annotated[float, Field(gt=0)] = Field(
        7.0, description="On a first start, how far back to derive from the historian."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_literal_secrets(cls, data: Any) -> Any:
        refuse_literal_secrets(data, MES_SECRET_KEYS)
        return data

    @field_validator("database")
    @classmethod
    def _database(cls, v: str) -> str:
        scheme = v.split(":", 1)[0]
        if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        if "@" in v and ":" in v.split("://", 1)[-1].split("@", 1)[0]:
            raise ValueError(literal_secret_message("password") + " (not in the database URL)")
        return v

    @model_validator(mode="after")
    def _tree(self) -> MesConfig:
        ids = [r.id for r in self.reasons]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate reason id(s): {', '.join(dup)}")
        known = set(ids)
        for r in self.reasons:
            if r.parent is not None and r.parent not in known:
                raise ValueError(f"reason {r.id!r}: parent {r.parent!r} is not a reason id")
        codes: dict[int, str] = {}
        for r in self.reasons:
            for c in r.codes:
                if c in codes:
                    raise ValueError(f"PLC reason code {c} is given to both {codes[c]!r} and {r.id!r}")
                codes[c] = r.id
        by_id = {r.id: r for r in self.reasons}
        for r in self.reasons:
            seen, node = {r.id}, r
            while node.loss is None and node.parent is not None:
                node = by_id[node.parent]
                if node.id in seen:
                    raise ValueError(f"reason tree has a cycle through {r.id!r}")
                seen.add(node.id)
            if node.loss is None:
                raise ValueError(f"reason {r.id!r} has no loss class (set 'loss' on it or an ancestor)")
        return self

    def reason_loss(self, reason_id: str) -> LossName:
        by_id = {r.id: r for r in self.reasons}
        node = by_id[reason_id]
        while node.loss is None and node.parent is not None:
            node = by_id[node.parent]
        assert node.loss is not None  # checked by _tree
        return node.loss

    def asset(self, path: str) -> MesAssetConfig:
        for a in self.assets:
            if a.path == path:
                return a
        raise KeyError(path)


def mes_consistency_issues(
    mes: MesConfig, signals_of: dict[str, set[str]]
) -> list[tuple[tuple[int | str, ...], str]]:
    """Assets and signals the mes section names that the asset tree does not have."""
    out: list[tuple[tuple[int | str, ...], str]] = []
    seen: set[str] = set()
    for i, a in enumerate(mes.assets):
        loc: tuple[int | str, ...] = ("mes", "assets", i)
        if a.path in seen:
            out.append(((*loc, "path"), f"asset {a.path} is mapped twice in mes.assets"))
        seen.add(a.path)
        if a.path not in signals_of:
            out.append(((*loc, "path"), f"unknown asset {a.path} (not in assets)"))
            continue
        for name in a.signals():
            if name not in signals_of[a.path]:
                out.append((loc, f"asset {a.path} has no signal {name!r}"))
    for i, lot in enumerate(mes.lots):
        loc = ("mes", "lots", i)
        if lot.asset not in signals_of:
            out.append(((*loc, "asset"), f"unknown asset {lot.asset} (not in assets)"))
            continue
        for sig in (lot.counter, lot.quantity, lot.reject):
            if sig and sig not in signals_of[lot.asset]:
                out.append((loc, f"asset {lot.asset} has no signal {sig!r}"))
        for j, src in enumerate(lot.inputs):
            if src not in signals_of:
                out.append(((*loc, "inputs", j), f"unknown input asset {src}"))
            elif src not in {r.asset for r in mes.lots}:
                out.append(((*loc, "inputs", j), f"input asset {src} has no lot rule, so makes no lots"))
    rule_of: dict[str, int] = {}
    prefix_of: dict[str, int] = {}
    for i, lot in enumerate(mes.lots):
        if lot.asset in rule_of:
            out.append(
                (
                    (("mes", "lots", i, "asset")),
                    f"asset {lot.asset} has a lot rule already (lots[{rule_of[lot.asset]}])",
                )
            )
        rule_of.setdefault(lot.asset, i)
        prefix = lot.serial_prefix or lot.asset.rsplit("/", 1)[-1]
        if prefix in prefix_of:
            out.append(
                (
                    ("mes", "lots", i),
                    f"lot ids would clash with lots[{prefix_of[prefix]}] (both {prefix}-N): set serial_prefix",
                )
            )
        prefix_of.setdefault(prefix, i)
        if lot.consume == "quantity" and not lot.quantity:
            out.append((("mes", "lots", i, "consume"), "consume: quantity needs a quantity counter"))
    for i, p in enumerate(mes.products):
        for path in p.ideal_cycle_s:
            if path not in signals_of:
                out.append((("mes", "products", i, "ideal_cycle_s"), f"unknown asset {path}"))
    return out
