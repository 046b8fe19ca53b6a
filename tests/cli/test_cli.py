"""`validate`, `plan` and `graph`, driven as subprocesses the way a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, tomasulo, tomasulo_many

EXAMPLES = ROOT / "examples"
PLAN = '1. math(expression="1+2")\n2. math(expression="x", variables={"x": $1})\n3. echo($1)\n4. join()\n'

BAD_FILES = [
    ("steps:\n  - plan: [1\n", "YAML syntax error"),
    ("stepz: []\n", "unknown key 'stepz' in the top level (did you mean 'steps'?)"),
    ("steps:\n  - plan: 1. echo(1)\nlimits: {max_tasks: lots}\n", "limits.max_tasks"),
    ("tools: [maths]\nsteps:\n  - plan: 1. echo(1)\n", "unknown built-in tool 'maths'"),
    ("tools: [echo]\nsteps:\n  - plan: |\n      1. eco(1)\n", "unknown tool 'eco'"),
    ("inputs: {x: {type: strin}}\nsteps:\n  - plan: 1. echo(1)\n", "inputs.x.type"),
]


def test_validate_ok_and_json() -> None:
    plain, as_json = tomasulo_many(
        ("validate", str(EXAMPLES / "research.yaml")), ("validate", str(EXAMPLES / "ask.yaml"), "--json")
    )
    assert plain.returncode == 0, plain.stderr
    assert "compare: 9 tasks" in plain.stdout
    assert json.loads(as_json.stdout)["steps"] == [{"id": "answer", "kind": "query", "tasks": None}]


def test_validate_and_run_refuse_bad_files_with_exit_2(tmp_path: Path) -> None:
    paths = []
    for i, (text, _) in enumerate(BAD_FILES):
        paths.append(tmp_path / f"wf{i}.yaml")
        paths[-1].write_text(text)
    # every file through `validate`; two of them through `validate --json` and `run` as well
    calls = [("validate", str(p)) for p in paths]
    calls += [("validate", str(paths[1]), "--json"), ("validate", str(paths[4]), "--json")]
    calls += [("run", str(paths[0])), ("run", str(paths[4]))]
    results = tomasulo_many(*calls)
    checked = [*range(len(paths)), 1, 4, 0, 4]
    for i, call, done in zip(checked, calls, results, strict=True):
        message = BAD_FILES[i][1]
        assert done.returncode == 2, (call, done.stderr)
        if "--json" in call:
            data = json.loads(done.stdout)
            assert data["ok"] is False and message in data["error"]
        else:
            assert message in done.stderr and str(paths[i]) in done.stderr, (call, done.stderr)


def test_plan_prints_tasks_and_critical_path_and_points_at_errors() -> None:
    plain = tomasulo("plan", "-", "--builtins", stdin=PLAN)
    assert plain.returncode == 0, plain.stderr
    assert "critical path: 1 -> 2" in plain.stdout
    as_json = tomasulo("plan", "-", "--builtins", "--json", stdin=PLAN)
    plan = json.loads(as_json.stdout)["plans"]["plan"]
    assert [t["deps"] for t in plan["tasks"]] == [[], [1], [1]]
    assert plan["waves"] == [[1], [2, 3]]
    done = tomasulo("plan", "-", "--builtins", stdin='1. mth(expression="1")\n')
    assert done.returncode == 2
    assert "line 1, column 4: unknown tool 'mth'" in done.stderr
    assert "did you mean 'math'?" in done.stderr
    done = tomasulo("plan", "-", stdin="1. echo($2)\n")
    assert done.returncode == 2 and "refers to task 2" in done.stderr
    done = tomasulo("plan", str(EXAMPLES / "missing.txt"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_graph_formats(tmp_path: Path) -> None:
    png, dot_file = tmp_path / "g.png", tmp_path / "g.dot"
    research = str(EXAMPLES / "research.yaml")
    mermaid, dot, drawn, bad, nopath = tomasulo_many(
        ("graph", research),
        ("graph", research, "--format", "dot", "-o", str(dot_file)),
        ("graph", research, "--format", "png", "-o", str(png)),
        ("graph", research, "--format", "svg"),
        ("graph", research, "--format", "png"),
    )
    assert mermaid.returncode == 0
    assert mermaid.stdout.startswith("flowchart LR") and "t3 --> t7" in mermaid.stdout
    assert dot.returncode == 0 and "t3 -> t7;" in dot_file.read_text()
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bad.returncode == 2 and "svg" in bad.stderr
    assert nopath.returncode == 2 and "needs --output" in nopath.stderr


def test_run_bad_inputs_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"id": 1, "country": "Nepal"}\n{"id": 1, "country": "Japan"}\n')
    out = tmp_path / "out.jsonl"
    research, batch = str(EXAMPLES / "research.yaml"), str(EXAMPLES / "batch.yaml")
    cases = [
        (("run", research, "-i", "frist=Japan"), "unknown input 'frist' (did you mean 'first'?)"),
        (("run", research, "-i", "first"), "-i takes key=value"),
        (("run", batch), "missing input 'country'"),
        (("run", batch, "--inputs", str(bad), "--out", str(out)), f"{bad}:2: the id 1 appears twice"),
        (("run", batch, "--inputs", str(bad), "--out", str(out), "-i", "country=x"), "do not mix"),
    ]
    for (args, message), done in zip(cases, tomasulo_many(*(a for a, _ in cases)), strict=True):
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert not out.exists()


def test_entry_point_is_installed() -> None:
    exe = Path(sys.executable).with_name("tomasulo")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "validate" in done.stdout
    for command in ("run", "ask", "simulate-llm", "graph", "plan"):
        assert command in done.stdout
