"""The ``sql`` tool: read-only queries on a SQLite file.

Two locks keep it read-only: the file is opened with a ``mode=ro`` URI, and an authorizer allows
only reading (``SELECT``, reading columns, calling functions, recursive CTEs), so writes,
``ATTACH``, ``PRAGMA`` and schema changes are refused even on a writable file. Queries take bound
parameters (``params``), return at most ``max_rows`` rows and are stopped after ``timeout``
seconds by a progress handler.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio.to_thread

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["database_from_script", "sql_tool"]

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _denied_action(query: str) -> str:
    word = query.strip().split(None, 1)[0].upper() if query.strip() else ""
    return word or "this statement"


def database_from_script(script: str | os.PathLike[str], *, cache_dir: str | None = None) -> Path:
    """Build a SQLite database from a SQL script, once, and return its path.

    The database lands in a cache folder keyed by the script's content (built in a temporary file
    and renamed into place, so a half-built file is never used), so repeated runs reuse it and no
    binary file needs to be committed next to the script.
    """
    text = Path(script).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(cache_dir or Path(tempfile.gettempdir()) / "tomasulo-sql-cache")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{Path(script).stem}-{digest}.db"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".db.tmp")
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(text)
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _run_query(path: Path, query: str, params: list[Any], max_rows: int, timeout: float) -> dict[str, Any]:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
    try:
        conn.set_authorizer(_authorizer)
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = conn.execute(query, params)
            rows = cursor.fetchmany(max_rows + 1)
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "authoriz" in text or "prohibited" in text:
                raise PermissionError(
                    f"the sql tool is read-only: {_denied_action(query)} is not allowed here "
                    "(only SELECT queries that read tables can run)"
                ) from None
            if "interrupted" in text:
                raise TimeoutError(f"the query ran longer than {timeout} seconds") from None
            if "readonly" in text or "read-only" in text:
                raise PermissionError("the sql tool is read-only: writes are refused") from None
            raise ValueError(f"SQL error: {text}") from None
        except sqlite3.Warning as exc:  # e.g. more than one statement
            raise ValueError(f"SQL error: {exc}") from None
        columns = [d[0] for d in cursor.description or ()]
    finally:
        conn.close()
    truncated = len(rows) > max_rows
    return {
        "columns": columns,
        "rows": [{c: _jsonable(v) for c, v in zip(columns, row, strict=True)} for row in rows[:max_rows]],
        "truncated": truncated,
    }


_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "one SELECT statement; use ? for parameters"},
        "params": {
            "type": "array",
            "items": {"type": ["string", "number", "integer", "boolean", "null"]},
            "description": "values bound to the ? placeholders, in order",
        },
    },
    "required": ["query"],
    "additionalProperties": False,
}

_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "columns": {"type": "array", "items": {"type": "string"}},
        "rows": {"type": "array", "items": {"type": "object"}},
        "truncated": {"type": "boolean"},
    },
}


def sql_tool(
    db: str | os.PathLike[str],
    *,
    max_rows: int = 1000,
    timeout: float = 5.0,
    max_query_length: int = 10_000,
    name: str = "sql",
) -> Tool:
    """The ``sql`` tool over the SQLite database ``db``.

    ``db`` is a database file, or a ``.sql`` script that is built into a cached database first
    (see :func:`database_from_script`). The tool takes ``query`` and optional ``params`` and
    returns ``{"columns": [...], "rows": [{column: value}, ...], "truncated": bool}``.

    >>> tool = sql_tool("examples/facts.sql")  # doctest: +SKIP
    """
    if max_rows < 1:
        raise ConfigError(f"max_rows must be at least 1, got {max_rows}")
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    path = Path(db)
    if not path.is_file():
        raise ConfigError(f"sql tool: no database file at {str(path)!r}")
    if path.suffix == ".sql":
        path = database_from_script(path)

    async def run_sql(query: str, params: list[Any] | None = None) -> dict[str, Any]:
        if len(query) > max_query_length:
            raise ValueError(f"the query is longer than {max_query_length} characters")
        return await anyio.to_thread.run_sync(
            _run_query, path, query, list(params or ()), max_rows, timeout, abandon_on_cancel=True
        )

    return Tool(
        name=name,
        description=(
            "Run one read-only SQL SELECT on a SQLite database; bind values with ? and params. "
            f"Returns columns, rows (as objects, at most {max_rows}) and whether rows were cut."
        ),
        input_schema=_SCHEMA,
        output_schema=_OUTPUT,
        policy=ToolPolicy(timeout=timeout + 1.0, idempotent=True),
        fn=run_sql,
    )
