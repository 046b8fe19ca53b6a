"""``tomasulo serve``, ``tomasulo db upgrade`` and ``tomasulo keys create/list/revoke``.

Only typer is imported here; FastAPI, SQLAlchemy and uvicorn load when a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from ._config import ServiceConfig
    from ._store import Database

__all__ = ["db_app", "keys_app", "serve_command"]

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="service.yaml: tools, models, tenants, limits.")
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="postgresql+psycopg://user:pw@host/db (env TOMASULO_DATABASE_URL; "
        "default: SQLite in --data-dir).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="State folder (default: the file's data_dir, else ~/.tomasulo)."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(code)


def _config(path: Path | None) -> ServiceConfig:
    from ..exceptions import UserError
    from ._config import ServiceConfig, load_service_config

    if path is None:
        return ServiceConfig()
    try:
        return load_service_config(path)
    except UserError as exc:
        _fail(str(exc))


def _database(config_path: Path | None, database_url: str | None, data_dir: Path | None) -> Database:
    from ..exceptions import UserError
    from ._store import database_for

    config = _config(config_path)
    try:
        db = database_for(config, database_url=database_url, data_dir=data_dir)
        db.upgrade()
    except UserError as exc:
        _fail(str(exc))
    except Exception as exc:  # the database itself: unreachable, refused, wrong password
        _fail(
            f"cannot use the database: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            1,
        )
    return db


def serve_command(
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Default 127.0.0.1 (or the file's host).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = None,
) -> None:
    """Serve the REST API (tools, plans, grammars, tenants) with uvicorn; prints URL and admin key.

    With no options: 127.0.0.1:8080, SQLite in ~/.tomasulo, the built-in tools, the LLM from
    TOMASULO_BASE_URL / TOMASULO_MODEL / TOMASULO_DIALECT / TOMASULO_API_KEY.
    """
    import anyio

    from ..exceptions import TomasuloError, UserError
    from ._serve import prepare, serve

    settings = _config(config)
    try:
        service = prepare(settings, database_url=database_url, data_dir=data_dir)
    except UserError as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"cannot start: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 1)
    try:
        started = anyio.run(lambda: serve(service, host=host, port=port))
    except KeyboardInterrupt:
        sys.stderr.write("stopped\n")
    except TomasuloError as exc:  # a tool source that cannot be opened, before anything listens
        _fail(f"cannot start: {exc}", 1)
    except OSError as exc:
        _fail(
            f"cannot listen on {host or settings.host}:{settings.port if port is None else port}: "
            f"{exc.strerror or exc}",
            1,
        )
    else:
        if not started:
            _fail("the service did not start (the error is above)", 1)


db_app = typer.Typer(help="The service's database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOpt = None, database_url: DatabaseOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Apply the schema migrations (the service also applies them when it starts)."""
    db = _database(config, database_url, data_dir)
    sys.stdout.write(f"{db.url}: at revision {db.revision()}\n")
    db.close()


keys_app = typer.Typer(help="API keys of the service's tenants.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The key's tenant.")] = "default",
    role: Annotated[
        str, typer.Option("--role", help="admin (manage tenants and keys) or member.")
    ] = "member",
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; it is printed this once (only a salted hash is stored)."""
    from ..exceptions import ConfigError
    from ._store import NotFound

    if role not in ("admin", "member"):
        _fail(f"--role {role!r}: use admin or member")
    db = _database(config, database_url, data_dir)
    db.sync_tenants(_config(config).tenants)  # the file's tenants exist before the first start
    try:
        record, full = db.create_key(tenant, role, name)  # type: ignore[arg-type]
    except NotFound:
        known = ", ".join(t.id for t in db.tenants())
        _fail(
            f"no tenant {tenant!r}; tenants: {known} "
            "(add tenants in the config file or POST /v1/admin/tenants)"
        )
    except ConfigError as exc:
        _fail(str(exc))
    finally:
        db.close()
    if as_json:
        sys.stdout.write(json.dumps({**record.to_json(), "key": full}) + "\n")
    else:
        sys.stdout.write(f"{full}\n")
        sys.stderr.write(f"key {record.id} ({role}) for tenant {tenant}: shown this once, keep it\n")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's keys.")] = None,
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List keys (ids, tenants, roles, dates; never secrets)."""
    db = _database(config, database_url, data_dir)
    records = [k.to_json() for k in db.keys(tenant)]
    db.close()
    if as_json:
        sys.stdout.write(json.dumps(records) + "\n")
        return
    for k in records:
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        sys.stdout.write(f"{k['id']}  {k['tenant_id']:<16} {k['role']:<7} {state:<10} {k['name']}\n")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (as `keys list` shows it).")],
    config: ConfigOpt = None,
    database_url: DatabaseOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key: requests with it fail from now on (within 30 s on other running replicas)."""
    from ._store import NotFound

    db = _database(config, database_url, data_dir)
    shown: dict[str, Any]
    try:
        shown = db.revoke_key(key_id.removeprefix("tmsk_").split("_")[0]).to_json()
    except NotFound:
        _fail(f"no key {key_id!r}; `tomasulo keys list` shows them")
    finally:
        db.close()
    sys.stdout.write(f"revoked {shown['id']} ({shown['tenant_id']}, {shown['role']})\n")
