"""The service's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

::

    tenants            id, name, granted tools and models (glob patterns), limits, source
    api_keys           id (public), tenant, role, salted scrypt hash, created / last used / revoked
    runs               id, tenant, status, kind, request, metadata, model, times, last_seq, lease
    events             (run_id, seq) primary key: the run journal, append-only, in JSON form
    results            one row per finished run: status, answer, the result's JSON form, usage
    idempotency_keys   (tenant_id, key) -> run_id, with a hash of the request that made it
    tenant_usage       (tenant_id, day): runs, tokens and cost, for per-day budgets
    batches            id, tenant, status, the workflow's text, model, metadata, totals, lease
    batch_items        (batch_id, index): one input of a batch, its status, result or error

Every table that holds a tenant's objects carries ``tenant_id`` (events and results through
their run), and every read of the service is filtered by it.

The migrations in ``migrations/versions`` create exactly these tables; a test checks that the
migrated database and this metadata agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "api_keys",
    "batch_items",
    "batches",
    "events",
    "idempotency_keys",
    "metadata",
    "results",
    "runs",
    "tenant_usage",
    "tenants",
]

#: JSON on SQLite, JSONB on PostgreSQL.
JsonType = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("tools", JsonType, nullable=False),  # glob patterns of granted tools
    Column("models", JsonType, nullable=False),  # glob patterns of granted models
    Column("limits", JsonType, nullable=False),  # TenantLimits as JSON
    Column("source", String(16), nullable=False, server_default="api"),  # config | api
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("source IN ('config', 'api')", name="source"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # the public part of the key: tmsk_<id>_<secret>
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("salt", String(64), nullable=False),  # hex
    Column("hash", String(128), nullable=False),  # hex scrypt of the secret
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("role IN ('admin', 'member')", name="role"),
    Index("ix_api_keys_tenant_id", "tenant_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # queued running succeeded failed cancelled ...
    Column("kind", String(16), nullable=False),  # question | plan | workflow
    Column("request", JsonType, nullable=False),  # the POST body, as accepted
    Column("metadata", JsonType, nullable=False),
    Column("model", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),  # the journal's last event
    Column("lease_owner", String(64), nullable=True),  # the replica driving the run
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    # cursor pagination: newest first within a tenant, id breaks ties
    Index("ix_runs_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
    Index("ix_runs_tenant_id_status", "tenant_id", "status"),
    Index("ix_runs_lease_expires_at", "lease_expires_at"),
)

events = Table(
    "events",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", BigInteger, nullable=False),  # the journal's sequence number, from 1
    Column("kind", String(64), nullable=False),  # the event's type name
    Column("at", Float, nullable=False),  # the event's time (seconds, wall clock)
    Column("data", JsonType, nullable=False),  # the event's JSON form
    PrimaryKeyConstraint("run_id", "seq", name="pk_events"),  # events(after=seq) is a range scan
)

results = Table(
    "results",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("answer", Text, nullable=True),
    Column("result", JsonType, nullable=False),  # RunResult's JSON form
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),  # sha256 of the canonical request
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "key", name="pk_idempotency_keys"),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

tenant_usage = Table(
    "tenant_usage",
    metadata,
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("day", Date, nullable=False),  # UTC
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("tenant_id", "day", name="pk_tenant_usage"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # running finished cancelled
    Column("workflow", Text, nullable=False),  # the workflow file's YAML text, as sent
    Column("model", String(64), nullable=True),
    Column("metadata", JsonType, nullable=False),
    Column("total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(64), nullable=True),  # the replica driving the batch
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_batches_tenant_id_created_at", "tenant_id", "created_at"),
    Index("ix_batches_status", "status"),
)

batch_items = Table(
    "batch_items",
    metadata,
    Column("batch_id", String(40), ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),  # the input's place in the request, from 0
    Column("inputs", JsonType, nullable=False),
    Column("status", String(16), nullable=False),  # pending running finished failed cancelled
    Column("run_id", String(40), nullable=True),
    Column("answer", Text, nullable=True),
    Column("outputs", JsonType, nullable=True),
    Column("error", Text, nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("batch_id", "idx", name="pk_batch_items"),
    Index("ix_batch_items_batch_id_status", "batch_id", "status"),
)
