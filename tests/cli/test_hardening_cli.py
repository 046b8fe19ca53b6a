"""A user's mistakes and hostile input at the command line: one clear line and an exit code, no traceback."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, tomasulo, tomasulo_many

EXAMPLES = ROOT / "examples"
TOOLS = '''\
import math
import sys

from tomasulo import tool


@tool
def leave(code: int = 3) -> int:
    """Calls sys.exit."""
    sys.exit(code)


@tool
def weird() -> dict:
    """Values JSON has no type for, which results are converted from (a set, a tuple)."""
    return {"set": {2, 1}, "pair": (1, "a")}


@tool
def garbage() -> dict:
    """Values no JSON can hold, and a list that contains itself."""
    loop = [1]
    loop.append(loop)
    return {"nan": math.nan, "bytes": b"hi", "object": object(), "loop": loop}
'''


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _no_traceback(*done: Any) -> None:
    for d in done:
        assert "Traceback" not in d.stderr + d.stdout, d.stderr


def _project(tmp_path: Path, workflow: str) -> Path:
    (tmp_path / "weird_tools.py").write_text(TOOLS)
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(workflow))
    return path


def test_bad_files_and_encodings_exit_2_with_one_line(tmp_path: Path) -> None:
    bomb = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):  # 9**12 values once expanded: today's loader never finishes
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]")
    steps = "steps:\n  - plan: '1. echo(1)'\n"
    files = {
        "bomb.yaml": ("\n".join(bomb) + "\n" + steps).encode(),
        "loop.yaml": ("a: &a [*a]\n" + steps).encode(),
        "latin1.yaml": "name: café\n".encode("latin-1") + steps.encode(),
        "default.yaml": b"inputs:\n  n: {type: integer, default: many}\n" + steps.encode(),
        "plan.txt": b'1. echo("caf\xe9")\n',
        "deep.txt": b"1. echo(" + b"[" * 5000 + b"]" * 5000 + b")\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    bomb_run, loop_run, latin1, default, plan_file, deep, argv = tomasulo_many(
        ("validate", str(tmp_path / "bomb.yaml")),
        ("run", str(tmp_path / "loop.yaml")),
        ("validate", str(tmp_path / "latin1.yaml"), "--json"),
        ("validate", str(tmp_path / "default.yaml")),
        ("plan", str(tmp_path / "plan.txt")),
        ("plan", str(tmp_path / "deep.txt")),
        ("run", str(EXAMPLES / "research.yaml"), "-i", "first=caf\udce9"),  # argv bytes not UTF-8
    )
    _no_traceback(bomb_run, loop_run, latin1, default, plan_file, deep, argv)
    assert argv.returncode == 2 and "input 'first' holds a lone surrogate (U+DCE9)" in argv.stderr
    assert bomb_run.returncode == 2 and "alias bomb" in bomb_run.stderr
    assert loop_run.returncode == 2 and "the alias *a is inside its own anchor &a" in loop_run.stderr
    assert latin1.returncode == 2
    assert "not UTF-8 text: byte 0xe9 at offset 9" in _strict(latin1.stdout)["error"]
    assert default.returncode == 2 and "input 'n': the default \"many\" is not an integer" in default.stderr
    assert plan_file.returncode == 2 and f"{tmp_path / 'plan.txt'}" in plan_file.stderr
    assert "byte 0xe9 at offset 12" in plan_file.stderr
    assert deep.returncode == 2
    first, *rest = deep.stderr.strip().splitlines()
    assert "deep.txt: line 1, column 73: nesting deeper than 64 levels" in first
    text, caret, hint = rest  # the line (cut to a window around the column), the caret, the hint
    assert len(text) < 200 and text.strip().startswith("...") and hint.lstrip().startswith("hint:")
    assert text[caret.index("^")] == "[", "the caret points at the bracket one level too deep"


def test_unwritable_outputs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    research, batch = str(EXAMPLES / "research.yaml"), str(EXAMPLES / "batch.yaml")
    inputs = str(EXAMPLES / "batch_inputs.jsonl")
    gantt, out, graph, ask, folder = tomasulo_many(
        ("run", research, "--gantt", str(blocker / "g.png")),
        ("run", batch, "--inputs", inputs, "--out", str(blocker / "out.jsonl")),
        ("graph", research, "--format", "dot", "-o", str(blocker / "g.dot")),
        (
            "ask",
            "q",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--gantt",
            str(blocker / "g.html"),
        ),
        ("run", batch, "--inputs", inputs, "--out", str(tmp_path)),
    )
    _no_traceback(gantt, out, graph, ask, folder)
    for done in (gantt, out, graph, ask):
        assert done.returncode == 2, done.stderr
        assert f"{blocker} is not a folder" in done.stderr
        assert done.stdout == "" and "task" not in done.stderr  # nothing ran
    assert folder.returncode == 2 and "is a folder" in folder.stderr


def test_an_integer_too_long_for_yaml_exits_2_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(
        "inputs:\n  n: {type: integer, default: " + "1" * 5000 + "}\nsteps: [{plan: '1. echo(1)'}]\n"
    )
    done = tomasulo("validate", str(path))
    _no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert f"{path}:2:31:" in done.stderr and "5000 digits" in done.stderr


def test_mcp_bounds_must_be_positive() -> None:
    zero, negative = tomasulo_many(("mcp", "--timeout", "0"), ("mcp", "--max-tasks", "0"))
    _no_traceback(zero, negative)
    assert zero.returncode == 2 and "--timeout must be a positive number" in zero.stderr
    assert negative.returncode == 2 and "--max-tasks" in negative.stderr


@pytest.mark.skipif(not Path("/proc/version").exists(), reason="needs Linux /proc")
def test_an_out_where_no_lock_file_can_be_made_exits_2_naming_out() -> None:
    batch, inputs = str(EXAMPLES / "batch.yaml"), str(EXAMPLES / "batch_inputs.jsonl")
    done = tomasulo("run", batch, "--inputs", inputs, "--out", "/proc/version")
    _no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert "--out /proc/version" in done.stderr and "lock file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_out_equal_to_inputs_is_refused_by_any_path(tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"country": "Nepal"}\n')
    (tmp_path / "link.jsonl").symlink_to(inputs)
    batch = str(EXAMPLES / "batch.yaml")
    results = tomasulo_many(
        ("run", batch, "--inputs", str(inputs), "--out", str(inputs)),
        ("run", batch, "--inputs", "in.jsonl", "--out", "./sub/../link.jsonl"),
        cwd=tmp_path,
    )
    for done in results:
        assert done.returncode == 2 and "is the inputs file" in done.stderr, done.stderr
    _no_traceback(*results)
    assert inputs.read_text() == '{"country": "Nepal"}\n'


def test_bad_batch_lines_fail_alone_and_the_batch_exits_1(tmp_path: Path) -> None:
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(b'{"country": "Japan"}\nnot json\n{"country": "\\udc80"}\n{"country": "caf\xe9"}\n')
    out = tmp_path / "out.jsonl"
    done = tomasulo("run", str(EXAMPLES / "batch.yaml"), "--inputs", str(inputs), "--out", str(out))
    _no_traceback(done)
    assert done.returncode == 1
    assert "4 ran, 0 already done, 3 failed" in done.stdout
    records = {r["line"]: r for r in map(_strict, out.read_text(encoding="utf-8").splitlines())}
    assert records[1]["outputs"]["capital"] == "Tokyo"
    assert [records[n]["ok"] for n in (2, 3, 4)] == [False, False, False]


def test_a_tool_that_calls_sys_exit_fails_its_task_not_the_process(tmp_path: Path) -> None:
    path = _project(
        tmp_path,
        """\
        tools: ["weird_tools:leave"]
        steps:
          - plan: |
              1. leave(7)
        """,
    )
    done = tomasulo("run", str(path))
    _no_traceback(done)
    assert done.returncode == 1  # the run failed; the tool's exit code never leaks out
    assert "task 1 leave: failed: SystemExit: 7 (the tool called sys.exit(7)" in done.stdout


def test_json_output_is_valid_for_any_result(tmp_path: Path) -> None:
    path = _project(
        tmp_path,
        """\
        tools: ["weird_tools:weird", "weird_tools:garbage", echo]
        steps:
          - id: s
            plan: |
              1. weird()
              2. echo({"got": $1, "note": "${1.set} items"})
          - id: bad
            plan: |
              1. garbage()
        outputs:
          got: s.got
        """,
    )
    as_json, plain = tomasulo_many(("run", str(path), "--json"), ("run", str(path)), cwd=tmp_path)
    _no_traceback(as_json, plain)
    # the garbage result is refused by the dispatcher's JSON rule, so that step fails
    assert as_json.returncode == 1 and plain.returncode == 1, as_json.stderr
    data = _strict(as_json.stdout)
    assert data["ok"] is False and data["failed_step"] == "bad"
    got = data["steps"]["s"]["got"]
    assert got == {"set": [1, 2], "pair": [1, "a"]}
    echo = data["tasks"][1]
    assert echo["call"] == 'echo(value={"got": $1, "note": "${1.set} items"})'
    assert echo["args"] == {"value": {"got": "$1", "note": "${1.set} items"}}
    refused = data["tasks"][2]
    assert refused["status"] == "failed" and refused["error_type"] == "ToolOutputError"
    assert "not a JSON value at nan" in refused["message"], refused["message"]
    assert "task 1 garbage: failed" in plain.stdout


def test_tools_option_refuses_what_is_not_a_tool(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    system, missing, broken, value = tomasulo_many(
        ("ask", "q", *url, "--tools", "os:system"),
        ("ask", "q", *url, "--tools", "no_such_module:tools"),
        ("ask", "q", *url, "--tools", "broken:tools"),
        ("plan", "-", "--tools", "math:pi"),
        cwd=tmp_path,
    )
    _no_traceback(system, missing, broken, value)
    assert (
        system.returncode == 2
        and "'os:system' is a built-in function (posix.system), not a tool" in system.stderr
    )
    assert missing.returncode == 2 and "cannot import module 'no_such_module'" in missing.stderr
    assert broken.returncode == 2 and "RuntimeError: broken at import" in broken.stderr
    assert value.returncode == 2 and "'math:pi' is a float, not a tool" in value.stderr


def test_a_deeply_nested_plan_from_the_llm_exits_2_with_one_line(
    simulated_llm: Callable[[str], str],
) -> None:
    base_url = simulated_llm("1. echo(" + "[" * 3000 + "]" * 3000 + ")\n2. join()\n")
    done = tomasulo("ask", "q", "--base-url", base_url, "--model", "sim", "--max-replans", "0")
    _no_traceback(done)
    assert done.returncode in (1, 2)  # bad input, or a run that failed on it: never a crash
    assert done.stderr.strip().splitlines()[-1].startswith("error:")
