"""The MES database schema as SQLAlchemy Core tables: equipment, products, orders, intervals, counts,
lots and genealogy, quality results, maintenance requests, audit and the derivation cursors.

Every derived row has a natural key, so deriving the same history twice writes the same rows once.
Times are UTC nanoseconds in BIGINT columns, like the rest of Shopfloor.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

PATH = 255  # asset paths: up to 8 segments

equipment = Table(
    "equipment",
    metadata,
    Column("path", String(PATH), primary_key=True),
    Column("level", String(16), nullable=False),  # site, area, line, asset
    Column("parent", String(PATH), nullable=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(64), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("position", Integer, nullable=False, default=0),  # order in the plant config (flow order)
)

products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("name_zh", String(200), nullable=False, default=""),
    Column("alloy", String(64), nullable=False, default=""),
)

product_ideals = Table(
    "product_ideals",
    metadata,
    Column("product", String(64), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("asset", String(PATH), primary_key=True),
    Column("ideal_cycle_s", Float, nullable=False),
    CheckConstraint("ideal_cycle_s > 0", name="ideal_positive"),
)

planned_stops = Table(
    "planned_stops",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(PATH), nullable=True),  # NULL: the whole plant
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("name", String(200), nullable=False, default=""),
    CheckConstraint("end_ns > start_ns", name="stop_order"),
)

work_orders = Table(
    "work_orders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("product", String(64), nullable=False),
    Column("asset", String(PATH), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("unit", String(32), nullable=False, default="units"),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("description", Text, nullable=False, default=""),
    Column("planned_start_ns", BigInteger, nullable=True),
    Column("planned_end_ns", BigInteger, nullable=True),
    Column("actual_start_ns", BigInteger, nullable=True),
    Column("actual_end_ns", BigInteger, nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    Index("ix_work_orders_asset_status", "asset", "status"),
)

state_intervals = Table(
    "state_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(PATH), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=True),  # NULL while the interval is open
    Column("state", String(24), nullable=False),  # mes.losses.StateCategory
    Column("plc_state", Integer, nullable=True),
    Column("plc_reason", Integer, nullable=True),
    Column("reason", String(64), nullable=True),  # reason id; NULL while running
    Column("reason_by", String(64), nullable=True),  # NULL: from the PLC; else who assigned it
    Column("order_id", String(64), nullable=True),
    UniqueConstraint("asset", "start_ns"),
    Index("ix_state_intervals_start", "start_ns"),
)

count_buckets = Table(
    "count_buckets",
    metadata,
    Column("asset", String(PATH), primary_key=True),
    Column("bucket_ns", BigInteger, primary_key=True),
    Column("total", Float, nullable=False, default=0.0),
    Column("good", Float, nullable=False, default=0.0),
    Column("scrap", Float, nullable=False, default=0.0),
    Column("rework", Float, nullable=False, default=0.0),
    Column("energy_kwh", Float, nullable=False, default=0.0),
    Column("mass_kg", Float, nullable=False, default=0.0),
    Column("ideal_s", Float, nullable=True),
    Column("order_id", String(64), nullable=True),
    Index("ix_count_buckets_bucket", "bucket_ns"),
    Index("ix_count_buckets_order", "order_id"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("asset", String(PATH), primary_key=True),
    Column("signal", String(128), primary_key=True),
    Column("ts_ns", BigInteger, nullable=False),
    Column("value", Float, nullable=True),
)

lots = Table(
    "lots",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("asset", String(PATH), nullable=False),
    Column("product", String(64), nullable=True),
    Column("order_id", String(64), nullable=True),
    Column("start_ns", BigInteger, nullable=True),
    Column("end_ns", BigInteger, nullable=False),
    Column("quantity", Float, nullable=False, default=1.0),
    Column("unit", String(32), nullable=False, default="units"),
    Column("energy_kwh", Float, nullable=True),
    Column("qty_mark", Float, nullable=True),  # the quantity counter's value when the lot ended
    Column("energy_mark", Float, nullable=True),  # the energy counter's value when the lot ended
    Column("remaining", Float, nullable=True),  # quantity not yet drawn by downstream lots ('quantity' mode)
    Column("consumed", Boolean, nullable=False, default=False),
    Column("verdict", String(16), nullable=False, default="unknown"),  # pass / fail / unknown
    Index("ix_lots_asset_end", "asset", "end_ns"),
    Index("ix_lots_waiting", "asset", "consumed", "end_ns"),
)

lot_links = Table(
    "lot_links",
    metadata,
    Column("parent", String(128), ForeignKey("lots.id", ondelete="CASCADE"), primary_key=True),
    Column("child", String(128), ForeignKey("lots.id", ondelete="CASCADE"), primary_key=True),
    Column("quantity", Float, nullable=True),
    Index("ix_lot_links_child", "child"),
)

quality_results = Table(
    "quality_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(PATH), nullable=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("characteristic", String(128), nullable=False),
    Column("value", Float, nullable=True),
    Column("unit", String(32), nullable=False, default=""),
    Column("verdict", String(16), nullable=False, default="unknown"),
    Column("lot_id", String(128), nullable=True),
    Column("source", String(64), nullable=False, default="derived"),
    UniqueConstraint("asset", "characteristic", "ts_ns"),
    Index("ix_quality_results_lot", "lot_id"),
)

maintenance_requests = Table(
    "maintenance_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False),  # the opener's idempotency key: one row per alert episode
    Column("asset", String(PATH), nullable=False),
    Column("kind", String(32), nullable=False),  # equipment | sensor_fault (mes.maintenance.KINDS)
    Column("subject", String(128), nullable=False),  # the failure mode, or the signal of a sensor fault
    Column("opened_ns", BigInteger, nullable=False),  # when the alert was raised (source time)
    Column("rul_hours", Float, nullable=True),  # NULL: no estimate
    Column("rul_low_hours", Float, nullable=True),
    Column("rul_high_hours", Float, nullable=True),
    Column("score", Float, nullable=True),
    Column("evidence", JSON, nullable=False, default=list),  # signal names, strongest first
    Column("detail", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False, default="open"),  # open | acknowledged | closed
    Column("updated_ns", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("note", Text, nullable=False, default=""),
    UniqueConstraint("key"),
    CheckConstraint("status IN ('open', 'acknowledged', 'closed')", name="status_known"),
    Index("ix_maintenance_requests_status_asset", "status", "asset"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts_ns", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Index("ix_audit_entity", "entity", "entity_id"),
)
