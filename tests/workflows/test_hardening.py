"""Hostile and broken input to workflow files and batch runs: bounded, typed, and nothing lost."""

from __future__ import annotations

import fcntl
import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import WorkflowError
from tomasulo.grammar import Ref, Template
from tomasulo.runtime import TaskRecord
from tomasulo.views import dumps_json, jsonable, task_json
from tomasulo.workflows import (
    load_workflow,
    loads_workflow,
    run_batch,
    run_workflow,
)

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEPS = "steps:\n  - plan: '1. echo(1)'\n"


def _error(text: str) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        loads_workflow(textwrap.dedent(text), path="wf.yaml")
    return info.value


# -- the YAML loader ----------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_at_the_alias_that_overflows() -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 6):  # 9**6 values once expanded (each level more multiplies by 9)
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]")
    err = _error("\n".join(lines) + "\n" + STEPS)
    assert "alias bomb" in str(err) and "more than 100000 values" in str(err)
    assert err.path == "wf.yaml" and err.line == 6


def test_a_self_referencing_alias_is_refused_with_its_position() -> None:
    err = _error("a: &loop [1, *loop]\n" + STEPS)
    assert "the alias *loop is inside its own anchor &loop" in str(err)
    assert (err.line, err.column) == (1, 14)


def test_deep_nesting_is_refused() -> None:
    err = _error(STEPS + "description: " + "[" * 200 + "]" * 200 + "\n")
    assert "nests deeper than 64 levels" in str(err) and err.line == 3


def test_aliases_within_the_bounds_still_work() -> None:
    wf = loads_workflow(
        "tools:\n  - {builtin: echo, policy: &p {retries: 2}}\n  - {builtin: math, policy: *p}\n" + STEPS
    )
    assert [t.policy.retries for t in wf.toolset] == [2, 2]


def test_an_integer_too_long_to_read_is_an_error_at_its_position() -> None:
    err = _error("inputs:\n  n: {type: integer, default: " + "1" * 5000 + "}\n" + STEPS)
    assert "an integer of 5000 digits is too long to read" in str(err) and "quote it" in str(err)
    assert (err.line, err.column) == (2, 31)
    date = _error("description: 2020-13-45\n" + STEPS)
    assert "month must be in 1..12" in str(date) and (date.line, date.column) == (1, 14)


def test_integers_too_large_to_write_as_text_are_refused_as_defaults_and_inputs() -> None:
    err = _error("inputs:\n  n: {type: integer, default: 0x" + "f" * 4000 + "}\n" + STEPS)
    assert "input 'n': the default holds an integer of about 4817 digits" in str(err)
    assert err.line == 2
    nested = _error("inputs:\n  n: {type: array, default: [1, 0b1" + "0" * 15000 + "]}\n" + STEPS)
    assert "more than the 4300 an integer may have" in str(nested)
    wf = loads_workflow("tools: [echo]\ninputs:\n  n: integer\n" + STEPS)
    assert wf.bind_inputs({"n": 10**4000}) == {"n": 10**4000}, "large, but it fits in text"
    with pytest.raises(WorkflowError, match="input 'n' holds an integer of about 6021 digits"):
        wf.bind_inputs({"n": 1 << 20000})
    with pytest.raises(WorkflowError, match="an integer of 5000 digits is more than the 4300") as info:
        wf.coerce("n", "9" * 5000)
    assert len(str(info.value)) < 300


def test_a_file_that_is_not_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1") + STEPS.encode())
    with pytest.raises(WorkflowError) as info:
        load_workflow(path)
    assert str(path) in str(info.value)
    assert "not UTF-8 text: byte 0xe9 at offset 9 (line 1, column 10)" in str(info.value)


def test_an_input_default_of_the_wrong_type_is_reported_with_name_and_type() -> None:
    err = _error("tools: [echo]\ninputs:\n  n: {type: integer, default: abc}\n" + STEPS)
    assert "input 'n': the default \"abc\" is not an integer" in str(err)
    assert (err.line, err.column) == (3, 31)
    err = _error("tools: [echo]\ninputs:\n  c: {type: string, enum: [a, b], default: z}\n" + STEPS)
    assert 'input \'c\': the default "z" is not one of its enum ["a", "b"]' in str(err)
    # null means "no value": an optional input
    wf = loads_workflow("tools: [echo]\ninputs:\n  n: {type: integer, default: null}\n" + STEPS)
    assert wf.bind_inputs({}) == {"n": None}


# -- the JSON rule ------------------------------------------------------------------------------


class Opaque:
    def __str__(self) -> str:
        return "opaque thing"


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_anything_becomes_valid_json_by_the_documented_rule() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    value = {
        "nan": math.nan,
        "inf": -math.inf,
        "set": {3, 1, 2},
        "bytes": b"\xff\x00",
        "object": Opaque(),
        "hostile": Hostile(),
        "surrogate": "a\udc80b",
        (1, 2): "tuple key",
        None: "null key",
        "loop": loop,
        "big": 10**5000,
    }
    text = dumps_json(value)

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the output")

    data = json.loads(text, parse_constant=refuse)
    assert data["nan"] == "NaN" and data["inf"] == "-Infinity"
    assert data["set"] == [1, 2, 3]
    assert data["bytes"] == {"base64": "/wA="}
    assert data["object"] == "opaque thing" and data["hostile"] == "<unprintable Hostile>"
    assert data["surrogate"] == "a\ufffdb"
    assert data["(1, 2)"] == "tuple key" and data["null"] == "null key"
    assert data["loop"] == [1, "<circular reference>"]
    assert data["big"] == "<integer of about 5000 digits>"
    text.encode("utf-8")  # no lone surrogates left


def test_task_arguments_are_plan_text_never_python_reprs() -> None:
    record = TaskRecord(
        id=3,
        tool="math",
        args={
            "expression": "a / b",
            "variables": {"a": Ref(1, ("rows", 0)), "b": Ref(2)},
            "note": Template(("x ", Ref(1))),
        },
        plan=1,
        status="succeeded",
        value={1},
    )
    data = task_json(record)
    assert data["call"] == 'math(expression="a / b", variables={"a": $1.rows[0], "b": $2}, note="x ${1}")'
    assert data["args"] == {
        "expression": "a / b",
        "variables": {"a": "$1.rows[0]", "b": "$2"},
        "note": "x ${1}",
    }
    assert data["value"] == [1]
    assert "Ref(" not in json.dumps(data)


def test_a_result_that_contains_itself_does_not_break_the_output() -> None:
    loop: dict[str, Any] = {"name": "me"}
    loop["self"] = loop
    assert jsonable(loop) == {"name": "me", "self": "<circular reference>"}


# -- batch runs ---------------------------------------------------------------------------------


def _inputs(path: Path, *countries: str) -> Path:
    path.write_text("".join(json.dumps({"country": c}) + "\n" for c in countries))
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_out_that_is_the_inputs_file_is_refused(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal")
    before = inputs.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(inputs)
    os.link(inputs, tmp_path / "hard.jsonl")
    (tmp_path / "sub").mkdir()
    for out in (
        inputs,
        tmp_path / "link.jsonl",
        tmp_path / "hard.jsonl",
        tmp_path / "sub" / ".." / "in.jsonl",
    ):
        with anyio.fail_after(10), pytest.raises(WorkflowError, match="is the inputs file"):
            await run_batch(wf, inputs, out, runner)
    assert inputs.read_bytes() == before and runner.runs == []


async def test_lines_without_id_are_keyed_by_content_so_inserting_one_reruns_nothing(
    runner: Any, tmp_path: Path
) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        first = await run_batch(wf, _inputs(tmp_path / "a.jsonl", "Nepal", "Japan"), out, runner)
    assert (first.ran, first.skipped) == (2, 0)
    # a line inserted at the top: today's line-number keys skip it and rerun Japan as line 3
    inputs = _inputs(tmp_path / "b.jsonl", "Brazil", "Nepal", "Japan")
    with anyio.fail_after(30):
        again = await run_batch(wf, inputs, out, runner)
    assert (again.ran, again.skipped, again.failed) == (1, 2, 0)
    records = _records(out)
    capitals = sorted(r["outputs"]["capital"] for r in records)
    assert capitals == ["Brasília", "Kathmandu", "Tokyo"]
    assert len({r["key"] for r in records}) == 3
    assert all(r["key"].startswith("sha256:") for r in records)


async def test_a_torn_last_line_is_redone_on_resume(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal", "Japan")
    out = tmp_path / "out.jsonl"
    with anyio.fail_after(30):
        await run_batch(wf, inputs, out, runner)
    whole = out.read_bytes()
    first, second = whole.splitlines(keepends=True)
    out.write_bytes(first + second[: len(second) // 2] + "é".encode()[:1])  # killed mid-write
    with anyio.fail_after(30):
        again = await run_batch(wf, inputs, out, runner)
    assert (again.ran, again.skipped) == (1, 1)
    assert sorted(r["outputs"]["capital"] for r in _records(out)) == ["Kathmandu", "Tokyo"]


async def test_an_output_file_that_is_not_batch_results_is_not_rewritten(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal")
    for i, notes in enumerate(["my notes\nmore notes\n", "one line\n", "no newline"]):
        out = tmp_path / f"notes{i}.txt"
        out.write_text(notes)
        with anyio.fail_after(10), pytest.raises(WorkflowError, match="line 1 is not a batch result"):
            await run_batch(wf, inputs, out, runner)
        assert out.read_text() == notes


async def test_a_second_batch_on_the_same_out_is_refused_by_the_lock(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    out = tmp_path / "out.jsonl"
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal")
    # another batch process holds the documented lock file
    fd = os.open(tmp_path / ".out.jsonl.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242")
        with anyio.fail_after(10), pytest.raises(WorkflowError) as info:
            await run_batch(wf, inputs, out, runner)
        assert "another batch is writing this file (process 4242)" in str(info.value)
        assert not out.exists() and runner.runs == []
    finally:
        os.close(fd)
    with anyio.fail_after(30):
        report = await run_batch(wf, inputs, out, runner)  # released: it runs
    assert report.ran == 1


async def test_a_symlink_to_the_out_file_shares_its_lock_and_stays_a_link(
    runner: Any, tmp_path: Path
) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal")
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "out.jsonl"
    failed = {"key": "old", "line": 1, "ok": False, "inputs": {}, "error": "x"}
    real.write_text(json.dumps(failed) + "\n")  # a failed record: a rerun rewrites the file
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    # a batch writing the real path holds its lock; the other path must not get past it
    fd = os.open(tmp_path / "real" / ".out.jsonl.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with anyio.fail_after(10), pytest.raises(WorkflowError, match="another batch is writing"):
            await run_batch(wf, inputs, link, runner)
        assert runner.runs == []
    finally:
        os.close(fd)
    with anyio.fail_after(30):
        report = await run_batch(wf, inputs, link, runner)
    assert report.ran == 1
    assert link.is_symlink() and link.resolve() == real.resolve(), "the rewrite kept the link"
    assert [r["outputs"]["capital"] for r in _records(real)] == ["Kathmandu"]


async def test_an_out_file_with_two_hard_links_is_refused(runner: Any, tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "batch.yaml")
    inputs = _inputs(tmp_path / "in.jsonl", "Nepal")
    out = tmp_path / "out.jsonl"
    out.write_text("")
    os.link(out, tmp_path / "other.jsonl")
    with anyio.fail_after(10), pytest.raises(WorkflowError, match="has 2 hard links"):
        await run_batch(wf, inputs, out, runner)
    assert runner.runs == []


# -- tools named by a workflow ------------------------------------------------------------------


def test_an_import_that_is_not_a_tool_is_refused_with_what_it_is() -> None:
    err = _error("tools:\n  - import: os:system\n" + STEPS)
    assert "'os:system' is a built-in function (posix.system), not a tool" in str(err)
    assert err.line == 2
    err = _error("tools:\n  - import: shutil:rmtree\n" + STEPS)
    assert "is a function of the standard library (shutil.rmtree)" in str(err)


async def test_sys_exit_in_a_sync_or_async_tool_fails_only_its_task(runner: Any, tmp_path: Path) -> None:
    (tmp_path / "exiting_tools.py").write_text(
        textwrap.dedent(
            '''\
            import sys

            from tomasulo import tool


            @tool
            def leave() -> int:
                """Exits."""
                sys.exit(4)


            @tool
            async def leave_async() -> int:
                """Exits, from a coroutine."""
                sys.exit(5)


            @tool
            def fine() -> int:
                """Returns."""
                return 1
            '''
        )
    )
    path = tmp_path / "wf.yaml"
    path.write_text(
        "tools: ['exiting_tools:leave', 'exiting_tools:leave_async', 'exiting_tools:fine']\n"
        "steps:\n  - plan: |\n      1. leave()\n      2. leave_async()\n      3. fine()\n"
    )
    with anyio.fail_after(20):
        result = await run_workflow(load_workflow(path), {}, runner)
    assert result.ok  # the step's output is task 3, which ran
    tasks = {t.id: t for t in runner.runs[0].result.tasks}
    assert tasks[1].status == tasks[2].status == "failed"
    assert "the tool called sys.exit(4)" in (tasks[1].message or "")
    assert "the tool called sys.exit(5)" in (tasks[2].message or "")
    assert tasks[3].status == "succeeded"
