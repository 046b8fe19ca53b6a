"""The ``sql`` tool: read-only, bounded queries on a SQLite file.

What a query can do: run one ``SELECT`` (with CTEs, recursive ones included, joins, aggregates,
window functions, the JSON functions and table-valued functions such as ``json_each``), read every
table of the database, and read the schema through the table-valued schema pragmas
(:data:`SCHEMA_PRAGMAS`, e.g. ``SELECT * FROM pragma_table_info('t')``).

What it cannot do, with two locks each:

- write: the file is opened with a ``mode=ro`` URI, and an authorizer (``set_authorizer``) allows
  only reading actions, so ``INSERT``/``UPDATE``/``DELETE``, schema changes, ``ATTACH``,
  ``VACUUM INTO`` and ``PRAGMA`` statements are refused even on a writable file;
- touch native state: the authorizer refuses the functions in :data:`DENIED_FUNCTIONS`
  (``load_extension``, ``fts3_tokenizer``, which hands out and takes raw pointers, and the shell's
  ``readfile``/``writefile``/``edit`` where a build has them), the virtual tables in
  :data:`DENIED_TABLES` and every pragma function that is not a schema pragma
  (``pragma_database_list`` would show the server's file paths);
- run unbounded: every query has a budget, enforced inside SQLite so that no argument can hold the
  worker thread (or, through it, the event loop) past the tool's timeout. The bounds, all
  arguments of :func:`sql_tool`:

  ``timeout`` (5 s) and ``max_steps`` (20,000,000 SQLite VM steps): a progress handler stops the
  query at either, and at once when the call is cancelled (a run's deadline);
  ``max_value_bytes`` (1,000,000): SQLite's own length limit, so no value, stored or computed
  along the way (``randomblob(1e9)``, ``group_concat`` over a big table), is ever larger;
  ``max_rows`` (1,000) and ``max_total_bytes`` (1,000,000): rows and bytes returned (text in
  UTF-8, blobs as hex); past either the rows are cut, ``truncated`` is true and ``note`` names the
  bound; ``max_query_length`` (10,000) characters of SQL.

  ``max_columns`` (64): result columns of a query (and of each subquery, ``ORDER BY`` and
  ``GROUP BY``), so one row, which is built whole before it can be measured, holds at most
  ``max_columns`` x ``max_value_bytes`` (64 MB; the two together may not pass
  :data:`MAX_ROW_BYTES`). Tables wider than that are read by naming the columns.
  ``max_like_pattern`` (100): bytes of a ``LIKE`` or ``GLOB`` pattern; matching one costs up to
  (text length) x (pattern length) inside one step, about a second at this bound on 1 MB.
  ``instr`` and ``replace`` are replaced by linear-time versions with the same results
  (SQLite's own are quadratic inside one step, out of the progress handler's reach).
  Sorts and ``UNION`` de-duplication may spill to SQLite's temporary files, bounded by the time
  and step budgets.

A ``.sql`` script is built into a database once and cached (:func:`database_from_script`) in a
private folder: created with mode 0700, and checked to be a real directory owned by this user that
no one else can read or write before anything in it is used.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from ...exceptions import ConfigError
from .._tool import Tool, ToolPolicy

__all__ = ["database_from_script", "sql_tool"]

#: Functions that read or write the process's native state (files, extensions, raw pointers).
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"})

#: Virtual tables that read files or raw database pages.
DENIED_TABLES = frozenset({"fsdir", "zipfile", "sqlite_dbpage"})

#: Pragmas allowed as table-valued functions (``pragma_<name>``): they describe the schema and
#: change nothing.
SCHEMA_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
    }
)

_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


@dataclass
class _Authorizer:
    """The authorizer of one query; remembers why it refused, for the error message."""

    first_action: int | None = None
    refused: str | None = None
    denied: bool = False

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
    ) -> int:
        if self.first_action is None:
            self.first_action = action
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            return self.deny(f"the function {arg2} is not allowed: it reads or writes native state")
        if action == sqlite3.SQLITE_READ and (arg1 or "").lower() in DENIED_TABLES:
            return self.deny(f"the table {arg1} is not allowed: it reads files or raw pages")
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and self.first_action == sqlite3.SQLITE_SELECT:
            # a table-valued pragma function inside a SELECT
            if (arg1 or "").lower() in SCHEMA_PRAGMAS:
                return sqlite3.SQLITE_OK
            return self.deny(
                f"pragma_{arg1} is not allowed: only the schema pragmas "
                f"{', '.join('pragma_' + p for p in sorted(SCHEMA_PRAGMAS))} can be read"
            )
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master" and db == "main" and src is None:
            # SQLite asks this when a SELECT first uses an eponymous virtual table (json_each,
            # pragma_table_info); a real write to sqlite_master is refused by SQLite itself,
            # and the file is open read-only.
            return sqlite3.SQLITE_OK
        self.denied = True
        return sqlite3.SQLITE_DENY

    def deny(self, reason: str) -> int:
        self.refused = self.refused or reason
        self.denied = True
        return sqlite3.SQLITE_DENY


def _denied_action(query: str) -> str:
    word = query.strip().split(None, 1)[0].upper() if query.strip() else ""
    return word or "this statement"


def _private_dir(folder: Path) -> Path:
    """``folder``, created with mode 0700 if missing, after checking that no one else can plant a
    file in it: a real directory (not a symlink), owned by this user, with no access for others.

    Raises:
        ConfigError: the folder exists but fails a check (the message says which and what to do).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    what = f"the sql cache folder {str(folder)!r}"
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise ConfigError(f"{what} is {kind}; remove it, or pass cache_dir= a private folder")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} belongs to user id {info.st_uid}, not to this user ({os.geteuid()}), so its "
            "files cannot be trusted; remove it, or pass cache_dir= a folder of your own"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{what} has mode {stat.S_IMODE(info.st_mode):04o}, so other users could read or plant "
            f"files in it; run chmod 700 {str(folder)!r}, or pass cache_dir= a private folder"
        )
    return folder


def _default_cache_dir() -> Path:
    user = os.geteuid() if hasattr(os, "geteuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"tomasulo-sql-cache-{user}"


def database_from_script(script: str | os.PathLike[str], *, cache_dir: str | None = None) -> Path:
    """Build a SQLite database from a SQL script, once, and return its path.

    The database lands in a cache folder keyed by the script's content (built in a temporary file
    and renamed into place, so a half-built file is never used), so repeated runs reuse it and no
    binary file needs to be committed next to the script. The folder (``cache_dir``, by default
    ``tomasulo-sql-cache-<uid>`` in the system's temporary folder) must be private: it is created
    with mode 0700, and an existing one must be a directory of this user's with no access for
    anyone else, or a :class:`~tomasulo.exceptions.ConfigError` says what to fix.
    """
    text = Path(script).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = _private_dir(Path(cache_dir) if cache_dir else _default_cache_dir())
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


#: The most result columns ``max_columns`` may allow (SQLite's own compile-time bound).
MAX_COLUMNS = 2000

#: The most one result row may hold in memory: ``max_columns`` x ``max_value_bytes`` must stay
#: within it (each value of a row is built before the row can be measured).
MAX_ROW_BYTES = 256_000_000

#: The leading bytes of a UTF-8 sequence's continuation (``10xxxxxx``).
_CONTINUATION = bytes(range(0x80, 0xC0))


class _LinearFunctions:
    """``instr`` and ``replace`` in linear time, with SQLite's semantics.

    SQLite's own compare the pattern at every position, so a long haystack and a long near-miss
    pattern cost their product, inside one VM step that no progress handler can stop. These use
    Python's linear-time search instead. Values are compared as SQLite compares them: as the
    UTF-8 text of numbers and strings, as bytes when both ``instr`` arguments are blobs.

    One difference remains: a ``replace`` of a blob whose result is not valid UTF-8 gives a
    blob of those bytes where SQLite gives text that Python cannot decode anyway.
    """

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self._aux: sqlite3.Connection | None = None

    def install(self, conn: sqlite3.Connection) -> None:
        conn.create_function("instr", 2, self.instr, deterministic=True)
        conn.create_function("replace", 3, self.replace, deterministic=True)

    def close(self) -> None:
        if self._aux is not None:
            self._aux.close()

    def _text(self, value: str | bytes | int | float) -> bytes:
        """The bytes of ``sqlite3_value_text(value)``."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, int):
            return str(value).encode()
        if self._aux is None:  # SQLite's own spelling of a real ("1.0e+20", "Inf")
            self._aux = sqlite3.connect(":memory:")
        return str(self._aux.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]).encode()

    def instr(self, haystack: Any, needle: Any) -> int | None:
        if haystack is None or needle is None:
            return None
        as_text = not (isinstance(haystack, bytes) and isinstance(needle, bytes))
        hay, pin = self._text(haystack), self._text(needle)
        if not pin:
            return 1
        if not as_text:
            return hay.find(pin) + 1
        # SQLite tries the first byte, then only the starts of characters
        if pin[0] in _CONTINUATION:
            return 1 if hay.startswith(pin) else 0
        at = hay.find(pin)
        if at < 0:
            return 0
        return 1 + len(hay[1 : at + 1].translate(None, _CONTINUATION))

    def replace(self, value: Any, pattern: Any, replacement: Any) -> Any:
        if value is None or pattern is None:
            return None
        text, old = self._text(value), self._text(pattern)
        if not old or old[0] == 0:
            return self._as_text(text) if isinstance(value, bytes) else value
        if replacement is None:
            return None
        new = self._text(replacement)
        size = len(text) + text.count(old) * (len(new) - len(old))
        if size > self.max_value_bytes:
            # a result one byte over SQLite's length limit makes SQLite fail the query with
            # SQLITE_TOOBIG, as its own replace would; built only up to that size
            return "x" * (self.max_value_bytes + 1)
        return self._as_text(text.replace(old, new))

    @staticmethod
    def _as_text(data: bytes) -> str | bytes:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data


@dataclass(frozen=True, slots=True)
class _Bounds:
    max_rows: int
    max_value_bytes: int
    max_total_bytes: int
    max_steps: int
    timeout: float
    max_query_length: int
    max_columns: int
    max_like_pattern: int


#: How many SQLite VM steps pass between two calls of the progress handler.
_STEPS_PER_CHECK = 1000


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return 2 * len(value)
    return 8


@dataclass
class _Query:
    """One query on its own connection, run in a worker thread; :meth:`cancel` stops it."""

    path: Path
    query: str
    params: list[Any]
    bounds: _Bounds
    cancelled: bool = False
    stopped_by: str | None = field(default=None, init=False)

    def cancel(self) -> None:
        self.cancelled = True  # the progress handler sees it within _STEPS_PER_CHECK steps

    def run(self) -> dict[str, Any]:
        b = self.bounds
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=b.timeout, check_same_thread=False)
        functions = _LinearFunctions(b.max_value_bytes)
        try:
            # the schema is read before the column limit is set, so tables of any width load
            # (and before the authorizer, which takes the first statement it sees for the query)
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 0").fetchall()
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"SQL error: {exc} (reading the schema of {self.path.name!r})") from None
            conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, b.max_columns)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, b.max_like_pattern)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, b.max_value_bytes)
            conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, max(b.max_query_length, 1))
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_WORKER_THREADS, 0)
            authorizer = _Authorizer()
            conn.set_authorizer(authorizer)
            functions.install(conn)
            deadline = time.monotonic() + b.timeout
            checks = [0]
            max_checks = max(b.max_steps // _STEPS_PER_CHECK, 1)

            def progress() -> int:
                checks[0] += 1
                if self.cancelled:
                    self.stopped_by = "cancelled"
                elif checks[0] > max_checks:
                    self.stopped_by = "max_steps"
                elif time.monotonic() > deadline:
                    self.stopped_by = "timeout"
                return 1 if self.stopped_by else 0

            conn.set_progress_handler(progress, _STEPS_PER_CHECK)
            try:
                cursor = conn.execute(self.query, self.params)
                columns = [d[0] for d in cursor.description or ()]
                rows, note = self.fetch(cursor, columns)
            except sqlite3.DatabaseError as exc:
                raise self.explain(exc, authorizer) from None
            except (sqlite3.Warning, sqlite3.Error, OverflowError) as exc:
                # more than one statement, a wrong number of parameters, an integer too big
                raise ValueError(f"SQL error: {exc}") from None
        finally:
            conn.close()
            functions.close()
        out: dict[str, Any] = {"columns": columns, "rows": rows, "truncated": note is not None}
        if note is not None:
            out["note"] = note
        return out

    def fetch(self, cursor: sqlite3.Cursor, columns: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        b = self.bounds
        rows: list[dict[str, Any]] = []
        total = 0
        for row in cursor:
            if len(rows) >= b.max_rows:
                return rows, (
                    f"only the first {b.max_rows} rows are shown (max_rows); "
                    "narrow the query or page with LIMIT and OFFSET"
                )
            size = sum(_size(v) for v in row)
            if total + size > b.max_total_bytes:
                return rows, (
                    f"only the first {len(rows)} rows are shown: the next would pass "
                    f"{b.max_total_bytes} bytes in all (max_total_bytes); select fewer or shorter columns"
                )
            total += size
            rows.append({c: _jsonable(v) for c, v in zip(columns, row, strict=True)})
        return rows, None

    def explain(self, exc: sqlite3.DatabaseError, authorizer: _Authorizer) -> Exception:
        # by SQLite's result code: the message may quote the query's own names
        code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_ERROR) & 0xFF
        text = str(exc)
        b = self.bounds
        # a refused function fails the query with SQLITE_ERROR, a refused action with SQLITE_AUTH
        if code == sqlite3.SQLITE_AUTH or authorizer.denied:
            if authorizer.refused:
                return PermissionError(f"the sql tool refused the query: {authorizer.refused}")
            hint = ""
            if _denied_action(self.query) == "PRAGMA":
                hint = "; read the schema with SELECT * FROM pragma_table_info('table') instead"
            return PermissionError(
                f"the sql tool is read-only: {_denied_action(self.query)} is not allowed here "
                f"(only SELECT queries that read tables can run){hint}"
            )
        if code == sqlite3.SQLITE_INTERRUPT:
            if self.stopped_by == "max_steps":
                return TimeoutError(
                    f"the query ran more than {b.max_steps} SQLite steps (max_steps); "
                    "add a LIMIT or narrow it"
                )
            if self.stopped_by == "cancelled":
                return TimeoutError("the query was stopped: its call was cancelled")
            return TimeoutError(f"the query ran longer than {b.timeout} seconds (timeout)")
        if code == sqlite3.SQLITE_TOOBIG:
            return ValueError(
                f"a value in the query is larger than {b.max_value_bytes} bytes (max_value_bytes); "
                "select part of it with substr() or use length(), or build smaller values"
            )
        if code == sqlite3.SQLITE_READONLY:
            return PermissionError("the sql tool is read-only: writes are refused")
        if text.startswith("LIKE or GLOB pattern too complex"):
            return ValueError(
                f"SQL error: a LIKE or GLOB pattern is longer than {b.max_like_pattern} bytes "
                "(max_like_pattern); use a shorter pattern, or instr() to find a long text"
            )
        if text.startswith("too many columns"):
            return ValueError(
                f"SQL error: {text}: a query may have at most {b.max_columns} columns (max_columns); "
                "name the columns you need instead of SELECT *"
            )
        return ValueError(f"SQL error: {text}")


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
        "note": {"type": "string", "description": "when rows were cut: the bound that cut them"},
    },
}


def sql_tool(
    db: str | os.PathLike[str],
    *,
    max_rows: int = 1000,
    timeout: float = 5.0,
    max_query_length: int = 10_000,
    max_value_bytes: int = 1_000_000,
    max_total_bytes: int = 1_000_000,
    max_steps: int = 20_000_000,
    max_columns: int = 64,
    max_like_pattern: int = 100,
    cache_dir: str | None = None,
    name: str = "sql",
) -> Tool:
    """The ``sql`` tool over the SQLite database ``db``.

    ``db`` is a database file, or a ``.sql`` script that is built into a cached database first
    (see :func:`database_from_script`; ``cache_dir`` picks its folder). The tool takes ``query``
    and optional ``params`` and returns ``{"columns": [...], "rows": [{column: value}, ...],
    "truncated": bool}``, plus a ``note`` naming the bound when rows were cut. The other
    arguments bound each query (see the module's documentation).

    >>> tool = sql_tool("examples/facts.sql", max_rows=100, timeout=2.0)  # doctest: +SKIP
    """
    for label, value in (
        ("max_rows", max_rows),
        ("max_query_length", max_query_length),
        ("max_value_bytes", max_value_bytes),
        ("max_total_bytes", max_total_bytes),
        ("max_steps", max_steps),
        ("max_columns", max_columns),
        ("max_like_pattern", max_like_pattern),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a whole number of at least 1, got {value!r}")
    if max_columns > MAX_COLUMNS:
        raise ConfigError(f"max_columns must be at most {MAX_COLUMNS} (SQLite's bound), got {max_columns}")
    if max_columns * max_value_bytes > MAX_ROW_BYTES:
        raise ConfigError(
            f"max_columns x max_value_bytes is {max_columns * max_value_bytes} bytes, more than the "
            f"{MAX_ROW_BYTES} one result row may hold in memory; lower one of them"
        )
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    path = Path(db)
    if not path.is_file():
        raise ConfigError(f"sql tool: no database file at {str(path)!r}")
    if path.suffix == ".sql":
        path = database_from_script(path, cache_dir=cache_dir)
    bounds = _Bounds(
        max_rows,
        max_value_bytes,
        max_total_bytes,
        max_steps,
        timeout,
        max_query_length,
        max_columns,
        max_like_pattern,
    )

    async def run_sql(query: str, params: list[Any] | None = None) -> dict[str, Any]:
        if len(query) > max_query_length:
            raise ValueError(f"the query is longer than {max_query_length} characters (max_query_length)")
        job = _Query(path, query, list(params or ()), bounds)
        try:
            return await anyio.to_thread.run_sync(job.run, abandon_on_cancel=True)
        finally:
            job.cancel()  # after a cancellation the abandoned thread stops at its next check

    return Tool(
        name=name,
        description=(
            "Run one read-only SQL SELECT on a SQLite database; bind values with ? and params. "
            f"Returns columns, rows (as objects, at most {max_rows}) and whether rows were cut. "
            "Read the schema with SELECT * FROM pragma_table_info('table')."
        ),
        input_schema=_SCHEMA,
        output_schema=_OUTPUT,
        policy=ToolPolicy(timeout=timeout + 1.0, idempotent=True),
        fn=run_sql,
    )
