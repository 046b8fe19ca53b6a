"""Alembic environment: migrations run on the connection the service hands over.

``tomasulo db upgrade`` and the service's start call :func:`tomasulo.service.upgrade_database`,
which passes its connection in ``config.attributes["connection"]``. On PostgreSQL an advisory
lock makes replicas that start at once migrate one after another.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from tomasulo.service._schema import metadata

#: The advisory lock held while migrating (any constant; "tmsl" in ASCII).
_LOCK_ID = 0x746D736C


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `tomasulo db upgrade`, which passes the connection")
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _LOCK_ID})
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _LOCK_ID})


run_migrations_online()
