"""The sql tool reads and never writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError
from tomasulo.tools import Tool
from tomasulo.tools.builtins import database_from_script, sql_tool

pytestmark = pytest.mark.anyio


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "facts.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE mountains(name TEXT, country TEXT, height_m INTEGER);
        INSERT INTO mountains VALUES ('Everest', 'Nepal', 8849), ('K2', 'Pakistan', 8611),
            ('Kilimanjaro', 'Tanzania', 5895);
        """
    )
    conn.commit()
    conn.close()
    return path


async def call(tool: Tool, **args: Any) -> Any:
    assert tool.fn is not None
    with anyio.fail_after(10):
        return await tool.fn(**tool.validate(args))


def rows_in(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM mountains").fetchone()[0])
    finally:
        conn.close()


async def test_select_with_bound_parameters(db: Path) -> None:
    out = await call(
        sql_tool(db),
        query="SELECT name, height_m FROM mountains WHERE country = ?",
        params=["Nepal"],
    )
    assert out == {
        "columns": ["name", "height_m"],
        "rows": [{"name": "Everest", "height_m": 8849}],
        "truncated": False,
    }


async def test_row_limit_cuts_and_says_so(db: Path) -> None:
    out = await call(sql_tool(db, max_rows=2), query="SELECT name FROM mountains ORDER BY name")
    assert [r["name"] for r in out["rows"]] == ["Everest", "K2"]
    assert out["truncated"] is True


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("INSERT INTO mountains VALUES ('Fuji', 'Japan', 3776)", "INSERT"),
        ("UPDATE mountains SET height_m = 0", "UPDATE"),
        ("DELETE FROM mountains", "DELETE"),
        ("DROP TABLE mountains", "DROP"),
        ("CREATE TABLE t(x)", "CREATE"),
        ("ATTACH DATABASE ':memory:' AS other", "ATTACH"),
        ("PRAGMA journal_mode = WAL", "PRAGMA"),
        ("PRAGMA writable_schema = ON", "PRAGMA"),
        ("PRAGMA table_info(mountains)", "PRAGMA"),
        ("REPLACE INTO mountains VALUES ('K2', 'China', 1)", "REPLACE"),
        ("WITH x AS (SELECT 1) DELETE FROM mountains", "WITH"),
    ],
)
async def test_writes_and_pragmas_are_refused(db: Path, query: str, word: str) -> None:
    with pytest.raises(PermissionError, match=f"read-only: {word} is not allowed"):
        await call(sql_tool(db), query=query)
    assert rows_in(db) == 3


async def test_vacuum_into_cannot_write_a_file(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    with pytest.raises((PermissionError, ValueError)):
        await call(sql_tool(db), query=f"VACUUM INTO '{target}'")
    assert not target.exists()


async def test_two_statements_are_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="one statement"):
        await call(sql_tool(db), query="SELECT 1; DELETE FROM mountains")
    assert rows_in(db) == 3


async def test_runaway_query_times_out(db: Path) -> None:
    query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(TimeoutError, match=r"longer than 0\.2 seconds"):
        await call(sql_tool(db, timeout=0.2), query=query)


async def test_sql_script_becomes_a_cached_database(tmp_path: Path) -> None:
    script = tmp_path / "tiny.sql"
    script.write_text("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2);")
    first = database_from_script(script, cache_dir=str(tmp_path / "cache"))
    assert database_from_script(script, cache_dir=str(tmp_path / "cache")) == first
    out = await call(sql_tool(script), query="SELECT sum(x) AS s FROM t")
    assert out["rows"] == [{"s": 3}]


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no database file"):
        sql_tool(tmp_path / "nope.db")
