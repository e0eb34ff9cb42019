"""maintenance requests

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("asset", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("rul_hours", sa.Float(), nullable=True),
        sa.Column("rul_low_hours", sa.Float(), nullable=True),
        sa.Column("rul_high_hours", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'closed')",
            name=op.f("ck_maintenance_requests_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_requests")),
        sa.UniqueConstraint("key", name=op.f("uq_maintenance_requests_key")),
    )
    with op.batch_alter_table("maintenance_requests", schema=None) as batch_op:
        batch_op.create_index("ix_maintenance_requests_status_asset", ["status", "asset"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("maintenance_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_maintenance_requests_status_asset")

    op.drop_table("maintenance_requests")
