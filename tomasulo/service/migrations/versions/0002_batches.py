"""Batches: one workflow over many inputs, each input's status and result.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("metadata", _JSON, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_batches_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_tenant_id_created_at", "batches", ["tenant_id", "created_at"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("inputs", _JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("outputs", _JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name="fk_batch_items_batch_id_batches", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("batch_id", "idx", name="pk_batch_items"),
    )
    op.create_index("ix_batch_items_batch_id_status", "batch_items", ["batch_id", "status"])


def downgrade() -> None:
    op.drop_table("batch_items")
    op.drop_table("batches")
