"""The sql tool reads and never writes."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomasulo.dispatcher import Dispatcher, Limits
from tomasulo.exceptions import ConfigError
from tomasulo.grammar import Task
from tomasulo.tools import Tool, Toolset
from tomasulo.tools.builtins import database_from_script, sql_tool
from tomasulo.tools.builtins._sql import _LinearFunctions

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
    assert "first 2 rows" in out["note"] and "max_rows" in out["note"]


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


@pytest.mark.parametrize(
    ("params", "message"),
    [([], "Incorrect number of bindings"), ([2**70], "too large to convert")],
)
async def test_bad_parameters_are_a_clear_error(db: Path, params: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"SQL error: .*{message}"):
        await call(sql_tool(db), query="SELECT name FROM mountains WHERE height_m > ?", params=params)


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


# -- bounds on what a query returns and costs ---------------------------------------------------


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    path = tmp_path / "wide.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs(id INTEGER, body TEXT)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [(i, "x" * 1000) for i in range(10)])
    conn.execute("INSERT INTO docs VALUES (99, ?)", ("y" * 5000,))
    conn.commit()
    conn.close()
    return path


async def test_total_bytes_cut_the_rows_and_the_note_names_the_bound(wide: Path) -> None:
    tool = sql_tool(wide, max_total_bytes=2500)
    out = await call(tool, query="SELECT body FROM docs WHERE id < 10 ORDER BY id")
    assert len(out["rows"]) == 2 and out["truncated"] is True
    assert "2500 bytes in all (max_total_bytes)" in out["note"]
    whole = await call(tool, query="SELECT id FROM docs ORDER BY id")
    assert len(whole["rows"]) == 11 and whole["truncated"] is False and "note" not in whole


@pytest.mark.parametrize(
    "query",
    [
        "SELECT randomblob(2000000)",  # over the default of 1,000,000
        "SELECT randomblob(1000000000)",
        "SELECT zeroblob(1e9)",
        "SELECT length(group_concat(docs.body)) FROM docs, docs AS d2, docs AS d3",
    ],
)
async def test_no_value_can_pass_max_value_bytes(wide: Path, query: str) -> None:
    tool = sql_tool(wide, timeout=60)
    assert tool.fn is not None
    with (
        anyio.fail_after(2),
        pytest.raises(ValueError, match=r"larger than 1000000 bytes \(max_value_bytes\)"),
    ):
        await tool.fn(query=query)


async def test_a_stored_value_over_max_value_bytes_is_refused_by_name(wide: Path) -> None:
    tool = sql_tool(wide, max_value_bytes=2000)
    assert (await call(tool, query="SELECT length(body) AS n FROM docs WHERE id = 1"))["rows"] == [
        {"n": 1000}
    ]
    with pytest.raises(ValueError, match=r"larger than 2000 bytes \(max_value_bytes\).*substr"):
        await call(tool, query="SELECT body FROM docs WHERE id = 99")


RUNAWAY = (
    "WITH RECURSIVE c(x) AS (SELECT height_m FROM mountains UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c"
)


async def test_a_step_budget_stops_a_recursive_query_within_a_2s_deadline(db: Path) -> None:
    tool = sql_tool(db, timeout=60, max_steps=200_000)
    assert tool.fn is not None
    with (
        anyio.fail_after(2),
        pytest.raises(TimeoutError, match=r"more than 200000 SQLite steps \(max_steps\)"),
    ):
        await tool.fn(query=RUNAWAY)


def lock_exclusively(db: Path) -> None:
    """Take the database's write lock, which waits (5 s at most) for every reader to finish."""
    conn = sqlite3.connect(db, timeout=5)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.rollback()
    finally:
        conn.close()


async def test_hostile_queries_in_a_run_end_within_its_deadline_and_stop(db: Path) -> None:
    tools = Toolset([sql_tool(db, timeout=60, max_steps=10**15)])
    plan = [Task(1, "sql", (RUNAWAY,)), Task(2, "sql", ("SELECT randomblob(1000000000)",))]
    with anyio.fail_after(3):
        out = await Dispatcher.run_plan(tools, plan, limits=Limits(deadline=1.0))
        assert out[1].status == "cancelled" and "deadline" in (out[1].message or "")
        assert out[2].status == "failed" and "max_value_bytes" in (out[2].message or "")
        # the cancelled query stopped: it no longer holds its read lock on the file
        await anyio.to_thread.run_sync(lock_exclusively, db)


async def test_a_cancelled_query_stops_and_lets_go_of_the_database(db: Path) -> None:
    tool = sql_tool(db, timeout=60, max_steps=10**15)
    assert tool.fn is not None
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3):
            await tool.fn(query=RUNAWAY)
        # an abandoned query that went on running would hold its read lock for a minute
        await anyio.to_thread.run_sync(lock_exclusively, db)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "SELECT fts3_tokenizer('simple')",
            "the function fts3_tokenizer is not allowed: it reads or writes native",
        ),
        ("SELECT load_extension('/tmp/x.so')", "the function load_extension is not allowed"),
        ("SELECT FTS3_TOKENIZER('porter')", "the function fts3_tokenizer is not allowed"),
        (
            "SELECT * FROM pragma_database_list",
            "pragma_database_list is not allowed: only the schema pragmas",
        ),
        ("SELECT * FROM pragma_journal_mode", "pragma_journal_mode is not allowed"),
    ],
)
async def test_functions_that_touch_native_state_are_refused(db: Path, query: str, message: str) -> None:
    with pytest.raises(PermissionError, match=message):
        await call(sql_tool(db), query=query)


async def test_schema_pragmas_and_json_tables_can_be_read(db: Path) -> None:
    tool = sql_tool(db)
    out = await call(tool, query="SELECT name, type FROM pragma_table_info('mountains') ORDER BY cid")
    assert out["rows"] == [
        {"name": "name", "type": "TEXT"},
        {"name": "country", "type": "TEXT"},
        {"name": "height_m", "type": "INTEGER"},
    ]
    items = await call(tool, query="SELECT value FROM json_each(?)", params=["[8849, 8611]"])
    assert items["rows"] == [{"value": 8849}, {"value": 8611}]
    with pytest.raises(PermissionError, match=r"PRAGMA is not allowed.*pragma_table_info"):
        await call(tool, query="PRAGMA table_info(mountains)")


@pytest.mark.parametrize(
    ("arg", "value"),
    [("max_value_bytes", 0), ("max_total_bytes", -1), ("max_steps", 0), ("max_rows", True)],
)
def test_bounds_are_validated(db: Path, arg: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"{arg} must be a whole number of at least 1"):
        sql_tool(db, **{arg: value})


# -- the build cache of .sql scripts ------------------------------------------------------------


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.sql"
    path.write_text("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1), (2);")
    return path


def test_the_cache_folder_is_created_private(script: Path, tmp_path: Path) -> None:
    built = database_from_script(script, cache_dir=str(tmp_path / "deep" / "cache"))
    assert stat.S_IMODE(os.stat(built.parent).st_mode) == 0o700


def test_the_default_cache_folder_is_per_user_and_private(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    built = database_from_script(script)
    assert built.parent == tmp_path / f"tomasulo-sql-cache-{os.geteuid()}"
    assert stat.S_IMODE(os.stat(built.parent).st_mode) == 0o700


def test_a_folder_others_can_write_is_refused_before_use(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another user made the folder first, open to all, to plant a database in it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"tomasulo-sql-cache-{os.geteuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    with pytest.raises(ConfigError, match=r"mode 0777, so other users could .*chmod 700"):
        sql_tool(script)


def test_a_symlinked_cache_folder_is_refused(script: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "cache")
    with pytest.raises(ConfigError, match="is a symlink"):
        database_from_script(script, cache_dir=str(tmp_path / "cache"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_a_cache_folder_of_another_user_is_refused(script: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, -1)
    with pytest.raises(ConfigError, match="belongs to user id 65534"):
        database_from_script(script, cache_dir=str(folder))


# -- errors are told apart by SQLite's result code, not by the words in the message -------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT interrupted FROM mountains", "no such column: interrupted"),
        ("SELECT * FROM prohibited", "no such table: prohibited"),
        ("SELECT * FROM authorized", "no such table: authorized"),
        ("SELECT readonly FROM mountains", "no such column: readonly"),
        ("SELECT [too big] FROM mountains", "no such column: too big"),
    ],
)
async def test_an_error_quoting_a_bound_word_is_not_taken_for_that_bound(
    db: Path, query: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^SQL error: {message}$"):
        await call(sql_tool(db), query=query)


# -- columns: a row is built whole before it can be measured ------------------------------------


@pytest.fixture
def very_wide(tmp_path: Path) -> Path:
    path = tmp_path / "very_wide.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE w(" + ", ".join(f"c{i}" for i in range(100)) + ")")
    conn.execute("INSERT INTO w(c0, c99) VALUES ('first', 'last')")
    conn.commit()
    conn.close()
    return path


async def test_columns_are_bounded_by_max_columns(very_wide: Path) -> None:
    tool = sql_tool(very_wide)
    many = "SELECT " + ", ".join(f"zeroblob(999000) AS b{i}" for i in range(65))
    with pytest.raises(ValueError, match=r"at most 64 columns \(max_columns\); name the columns"):
        await call(tool, query=many)
    with pytest.raises(ValueError, match=r"at most 64 columns \(max_columns\)"):
        await call(tool, query="SELECT * FROM w")
    # a table wider than the bound is still read, a few columns at a time
    out = await call(tool, query="SELECT c0, c99 FROM w")
    assert out["rows"] == [{"c0": "first", "c99": "last"}]
    fine = await call(tool, query="SELECT " + ", ".join(f"{i} AS n{i}" for i in range(64)))
    assert len(fine["columns"]) == 64
    assert len((await call(sql_tool(very_wide, max_columns=100), query="SELECT * FROM w"))["columns"]) == 100


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, but long enough to have a header of its own " * 10)
    with pytest.raises(ValueError, match=r"SQL error: file is not a database \(reading the schema of"):
        await call(sql_tool(path), query="SELECT 1")


def test_one_row_is_bounded_in_memory(db: Path) -> None:
    with pytest.raises(ConfigError, match=r"max_columns x max_value_bytes is 2000000000 bytes, more than"):
        sql_tool(db, max_columns=2000)
    with pytest.raises(ConfigError, match=r"max_columns must be at most 2000 \(SQLite's bound\)"):
        sql_tool(db, max_columns=2001, max_value_bytes=10)
    sql_tool(db, max_columns=2000, max_value_bytes=100_000)


# -- instr and replace run in linear time -------------------------------------------------------

# a haystack of 1,000,000 zeros and a near miss of 500,000: SQLite's own instr and replace compare
# at every position, 2.5e11 byte comparisons inside one step that no progress handler can stop
HAYSTACK = "hex(zeroblob(500000))"
NEAR_MISS = "hex(zeroblob(250000)) || '1'"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"SELECT instr({HAYSTACK}, {NEAR_MISS}) AS r", 0),
        (f"SELECT length(replace({HAYSTACK}, {NEAR_MISS}, 'x')) AS r", 1_000_000),
        (f"SELECT instr({HAYSTACK} || '1', {NEAR_MISS}) AS r", 500_001),
        (f"SELECT length(replace({HAYSTACK} || '1', {NEAR_MISS}, 'x')) AS r", 500_001),
    ],
)
async def test_instr_and_replace_on_long_text_end_within_the_timeout(
    db: Path, query: str, expected: int
) -> None:
    tool = sql_tool(db, timeout=1.0, max_value_bytes=1_000_001)
    assert tool.fn is not None
    with anyio.fail_after(5):
        out = await tool.fn(query=query)
    assert out["rows"] == [{"r": expected}]


async def test_like_and_glob_patterns_are_bounded_by_max_like_pattern(db: Path) -> None:
    tool = sql_tool(db, timeout=1.0, max_value_bytes=1_000_001)
    assert tool.fn is not None
    # a 10,002-byte pattern on a 1 MB text: SQLite tries it at every position, inside one step
    for op, wildcard in (("LIKE", "%"), ("GLOB", "*")):
        query = f"SELECT {HAYSTACK} {op} '{wildcard}' || hex(zeroblob(5000)) || '1'"
        with (
            anyio.fail_after(5),
            pytest.raises(ValueError, match=r"longer than 100 bytes \(max_like_pattern\)"),
        ):
            await tool.fn(query=query)
    out = await call(tool, query="SELECT name FROM mountains WHERE name LIKE 'k%' ORDER BY name")
    assert out["rows"] == [{"name": "K2"}, {"name": "Kilimanjaro"}]


async def test_replace_still_refuses_a_result_over_max_value_bytes(db: Path) -> None:
    tool = sql_tool(db, max_value_bytes=1000)
    with pytest.raises(ValueError, match=r"larger than 1000 bytes \(max_value_bytes\)"):
        await call(tool, query="SELECT replace(hex(zeroblob(100)), '0', hex(zeroblob(100)))")
    assert (await call(tool, query="SELECT length(replace(hex(zeroblob(10)), '0', 'ab')) AS n"))["rows"] == [
        {"n": 40}
    ]


_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(alphabet="ab\x00é中\U0001f600", max_size=8),
    st.lists(
        st.sampled_from([b"a", b"b", b"\x00", b"\xc3", b"\xa9", b"\xff", "中".encode()]), max_size=8
    ).map(b"".join),
)


def _both(query: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    builtin = sqlite3.connect(":memory:")
    ours = sqlite3.connect(":memory:")
    functions = _LinearFunctions(1_000_000)
    functions.install(ours)
    try:
        return builtin.execute(query, args).fetchone(), ours.execute(query, args).fetchone()
    finally:
        builtin.close()
        ours.close()
        functions.close()


@settings(max_examples=400, deadline=None)
@given(_VALUES, _VALUES)
def test_instr_is_sqlites_instr(haystack: Any, needle: Any) -> None:
    expected, got = _both("SELECT typeof(instr(?1, ?2)), instr(?1, ?2)", (haystack, needle))
    assert got == expected


@settings(max_examples=400, deadline=None)
@given(_VALUES, _VALUES, _VALUES)
def test_replace_is_sqlites_replace(value: Any, pattern: Any, replacement: Any) -> None:
    (kind, data), got = _both(
        "SELECT typeof(replace(?1, ?2, ?3)), hex(replace(?1, ?2, ?3))", (value, pattern, replacement)
    )
    if kind == "text" and not _is_utf8(bytes.fromhex(data)):
        kind = "blob"  # text Python could not decode comes back as a blob of the same bytes
    assert got == (kind, data)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
