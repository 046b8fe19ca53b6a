"""The service layer: the REST service (``tomasulo serve``) and tomasulo as an MCP server
(``tomasulo mcp``).

The names load FastAPI, SQLAlchemy or the ``mcp`` SDK on first use.

>>> from tomasulo.service import load_service_config, prepare, serve   # doctest: +SKIP
>>> service = prepare(load_service_config("service.yaml"))             # doctest: +SKIP
>>> anyio.run(serve, service)                                          # doctest: +SKIP
"""

from typing import Any

__all__ = [
    "Database",
    "PreparedService",
    "Problem",
    "ProblemError",
    "RunRecords",
    "ServiceConfig",
    "SqlRunStore",
    "build_mcp_server",
    "create_app",
    "db_app",
    "keys_app",
    "load_service_config",
    "prepare",
    "serve",
    "serve_command",
    "serve_mcp_http",
    "upgrade_database",
]

_HOMES = {
    "build_mcp_server": "_mcp_server",
    "serve_mcp_http": "_mcp_server",
    "Database": "_store",
    "RunRecords": "_runs_store",
    "SqlRunStore": "_runs_store",
    "upgrade_database": "_store",
    "ServiceConfig": "_config",
    "load_service_config": "_config",
    "create_app": "_app",
    "Problem": "_problems",
    "ProblemError": "_problems",
    "PreparedService": "_serve",
    "prepare": "_serve",
    "serve": "_serve",
    "serve_command": "_cli",
    "db_app": "_cli",
    "keys_app": "_cli",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{home}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
