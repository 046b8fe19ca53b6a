"""The service's database: engine, migrations, and the tenant and key records.

SQLite (the default, in the data folder, WAL mode) or PostgreSQL (``postgresql+psycopg://``),
through SQLAlchemy 2 Core. The methods are synchronous; the app calls them from worker threads.

>>> db = Database.open("sqlite:////tmp/t.db")   # doctest: +SKIP
>>> db.upgrade()                                # doctest: +SKIP
>>> db.create_tenant("acme", name="Acme")       # doctest: +SKIP

``upgrade`` applies the Alembic migrations up to the newest revision.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..exceptions import ConfigError, UserError
from ._config import DEFAULT_DATA_DIR, DEFAULT_TENANT, ServiceConfig, TenantLimits, TenantSpec
from ._keys import ROLES, Principal, Role, hash_secret, new_key, parse_key, verify
from ._schema import api_keys, tenants

__all__ = [
    "Database",
    "KeyRecord",
    "NotFound",
    "Tenant",
    "data_dir_for",
    "database_for",
    "sqlite_url",
    "upgrade_database",
]

MIGRATIONS = Path(__file__).with_name("migrations")


class NotFound(LookupError):
    """No such object for this caller (a tenant's object seen from another tenant is one too)."""


class Conflict(ValueError):
    """The object exists already."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant as stored: what it may use and its limits."""

    id: str
    name: str = ""
    tools: tuple[str, ...] = ("*",)
    models: tuple[str, ...] = ("*",)
    limits: TenantLimits = field(default_factory=TenantLimits)
    source: str = "api"
    disabled: bool = False
    created_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The tenant as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "tools": list(self.tools),
            "models": list(self.models),
            "limits": self.limits.model_dump(),
            "source": self.source,
            "disabled": self.disabled,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An API key as stored, without its secret."""

    id: str
    tenant_id: str
    role: Role
    name: str
    created_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        """The key as the API shows it (never the secret or its hash)."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "role": self.role,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives back naive times; they were written in UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sqlite_url(data_dir: Path) -> str:
    """The SQLite URL of the database in ``data_dir``."""
    return f"sqlite:///{(data_dir / 'tomasulo.db').resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations shipped in the package, up to ``revision``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class Database:
    """The service's tables behind one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

        Raises:
            ConfigError: the URL is not one SQLAlchemy can use.
        """
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(
                f"--database-url {url!r} is not a database URL; use sqlite:///path/to.db or "
                "postgresql+psycopg://user:password@host/dbname"
            ) from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigError(f"database {backend!r} is not supported; use SQLite or PostgreSQL")
        try:
            if backend == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(parsed, connect_args={"check_same_thread": False})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
        except (ImportError, sa.exc.ArgumentError) as exc:
            raise ConfigError(f"cannot use the database {parsed.render_as_string()}: {exc}") from None
        return cls(engine)

    @property
    def url(self) -> str:
        """The URL, with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def upgrade(self) -> None:
        """Bring the schema to the newest revision."""
        upgrade_database(self.engine)

    def revision(self) -> str | None:
        """The schema's current Alembic revision (``None``: not migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- tenants --------------------------------------------------------------------------------

    @staticmethod
    def _tenant(row: Any) -> Tenant:
        return Tenant(
            id=row.id,
            name=row.name,
            tools=tuple(row.tools),
            models=tuple(row.models),
            limits=TenantLimits.model_validate(row.limits or {}),
            source=row.source,
            disabled=bool(row.disabled),
            created_at=row.created_at,
        )

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant ``tenant_id``; :class:`NotFound` if there is none."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).first()
        if row is None:
            raise NotFound(f"tenant {tenant_id!r}")
        return self._tenant(row)

    def tenants(self) -> list[Tenant]:
        """Every tenant, by id."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(tenants).order_by(tenants.c.id)).all()
        return [self._tenant(r) for r in rows]

    def create_tenant(self, tenant_id: str, spec: TenantSpec | None = None, *, source: str = "api") -> Tenant:
        """Add a tenant; :class:`Conflict` if the id is taken."""
        spec = spec or TenantSpec()
        now = _now()
        values = {
            "id": tenant_id,
            "name": spec.name,
            "tools": list(spec.tools),
            "models": list(spec.models),
            "limits": spec.limits.model_dump(),
            "source": source,
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(tenants).values(**values))
        except sa.exc.IntegrityError:
            raise Conflict(f"tenant {tenant_id!r} exists already") from None
        return self.tenant(tenant_id)

    def update_tenant(self, tenant_id: str, changes: Mapping[str, Any]) -> Tenant:
        """Change a tenant's name, grants, limits or ``disabled``; :class:`NotFound` if none."""
        values = dict(changes)
        if "limits" in values and isinstance(values["limits"], TenantLimits):
            values["limits"] = values["limits"].model_dump()
        for key in ("tools", "models"):
            if key in values:
                values[key] = list(values[key])
        values["updated_at"] = _now()
        with self.engine.begin() as connection:
            done = connection.execute(sa.update(tenants).where(tenants.c.id == tenant_id).values(**values))
        if done.rowcount == 0:
            raise NotFound(f"tenant {tenant_id!r}")
        return self.tenant(tenant_id)

    def delete_tenant(self, tenant_id: str) -> None:
        """Delete a tenant with its keys and runs; :class:`NotFound` if there is none."""
        with self.engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            done = connection.execute(sa.delete(tenants).where(tenants.c.id == tenant_id))
        if done.rowcount == 0:
            raise NotFound(f"tenant {tenant_id!r}")

    def sync_tenants(self, configured: Mapping[str, TenantSpec]) -> None:
        """Make the config file's tenants exist as written (the file wins over API changes),
        and make sure the ``default`` tenant exists."""
        wanted = dict(configured)
        wanted.setdefault(DEFAULT_TENANT, TenantSpec(name="default"))
        existing = {t.id for t in self.tenants()}
        for tenant_id, spec in wanted.items():
            source = "config" if tenant_id in configured else "api"
            if tenant_id not in existing:
                try:
                    self.create_tenant(tenant_id, spec, source=source)
                    continue
                except Conflict:  # another replica made it just now
                    pass
            if source == "config":
                self.update_tenant(
                    tenant_id,
                    {
                        "name": spec.name,
                        "tools": spec.tools,
                        "models": spec.models,
                        "limits": spec.limits,
                        "source": "config",
                    },
                )

    # -- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _key(row: Any) -> KeyRecord:
        return KeyRecord(
            id=row.id,
            tenant_id=row.tenant_id,
            role=row.role,
            name=row.name,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    def create_key(self, tenant_id: str, role: Role = "member", name: str = "") -> tuple[KeyRecord, str]:
        """A new key for the tenant: its record and the full key (shown once, never stored).

        Raises:
            NotFound: no such tenant.
            ConfigError: an unknown role, or an admin key for a tenant other than the default
                one (admin keys manage every tenant, so they belong to the server's operators).
        """
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role == "admin" and tenant_id != DEFAULT_TENANT:
            raise ConfigError(
                f"admin keys belong to the {DEFAULT_TENANT!r} tenant (they manage every tenant); "
                f"give tenant {tenant_id!r} member keys"
            )
        self.tenant(tenant_id)
        key_id, secret, full = new_key()
        salt, digest = hash_secret(secret)
        with self.engine.begin() as connection:
            connection.execute(
                sa.insert(api_keys).values(
                    id=key_id,
                    tenant_id=tenant_id,
                    role=role,
                    name=name,
                    salt=salt,
                    hash=digest,
                    created_at=_now(),
                )
            )
        return self.key(key_id), full

    def key(self, key_id: str, tenant_id: str | None = None) -> KeyRecord:
        """A key's record (of ``tenant_id`` only, when given); :class:`NotFound` if none."""
        query = sa.select(api_keys).where(api_keys.c.id == key_id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"key {key_id!r}")
        return self._key(row)

    def keys(self, tenant_id: str | None = None, *, revoked: bool = True) -> list[KeyRecord]:
        """Keys, oldest first (of one tenant when given; without revoked ones if ``revoked=False``)."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        if not revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as connection:
            return [self._key(r) for r in connection.execute(query).all()]

    def revoke_key(self, key_id: str, tenant_id: str | None = None) -> KeyRecord:
        """Revoke a key (it stays listed, with ``revoked_at``); :class:`NotFound` if none."""
        query = sa.update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.engine.begin() as connection:
            connection.execute(query.values(revoked_at=_now()))
        return self.key(key_id, tenant_id)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked key of an enabled tenant, else ``None``."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        query = (
            sa.select(api_keys, tenants.c.disabled)
            .join(tenants, tenants.c.id == api_keys.c.tenant_id)
            .where(api_keys.c.id == key_id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.revoked_at is not None or row.disabled:
            return None
        if not verify(secret, row.salt, row.hash):
            return None
        with self.engine.begin() as connection:
            connection.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=_now()))
        return Principal(key_id=row.id, tenant_id=row.tenant_id, role=row.role)

    def has_admin_key(self) -> bool:
        """Whether any unrevoked admin key exists."""
        query = sa.select(sa.func.count()).select_from(api_keys)
        query = query.where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as connection:
            return bool(connection.execute(query).scalar_one())

    def bootstrap(self, configured: Mapping[str, TenantSpec]) -> str | None:
        """Sync the configured tenants; on first start, create an admin key and return it."""
        self.sync_tenants(configured)
        if self.has_admin_key():
            return None
        _, full = self.create_key(DEFAULT_TENANT, "admin", name="created on first start")
        return full


def data_dir_for(config: ServiceConfig, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``--data-dir``, else the file's ``data_dir``, else ``~/.tomasulo``."""
    chosen = data_dir if data_dir is not None else config.data_dir
    path = Path(chosen).expanduser() if chosen is not None else DEFAULT_DATA_DIR.expanduser()
    if chosen is not None and config.folder is not None and not path.is_absolute() and data_dir is None:
        path = config.folder / path
    return path


def database_for(
    config: ServiceConfig,
    *,
    database_url: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Database:
    """The database: ``--database-url``, else the file's, else SQLite in the data folder.

    Raises:
        ConfigError: a URL SQLAlchemy cannot use, or a data folder that cannot be made.
    """
    url = database_url or os.environ.get("TOMASULO_DATABASE_URL") or config.database_url
    if url is None:
        folder = data_dir_for(config, data_dir)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # key hashes live here
        except OSError as exc:
            raise UserError(f"cannot make the data folder {folder}: {exc.strerror}") from None
        url = sqlite_url(folder)
    return Database.open(url)
