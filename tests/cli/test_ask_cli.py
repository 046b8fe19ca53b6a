"""`tomasulo ask` end to end against `tomasulo simulate-llm` on loopback, both as subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import ROOT, clean_env, result_of, tomasulo, tomasulo_many

FACTS = str(ROOT / "examples" / "facts.sql")
PLAN = """\
Thought: the two heights are independent.
1. sql(query="SELECT height_m FROM mountains WHERE name = 'Mount Everest'")
2. sql(query="SELECT height_m FROM mountains WHERE name = 'Mont Blanc'")
3. math(expression="round(a / b, 2)", variables={"a": $1.rows[0].height_m, "b": $2.rows[0].height_m})
4. join()
"""
FINISH = json.dumps({"thought": "task 3 has the ratio", "action": "finish", "answer": "About 1.84 times."})
QUESTION = "How many times higher is Everest than Mont Blanc?"


def test_ask_plans_runs_and_answers(simulated_llm: Callable[[str], str], tmp_path: Path) -> None:
    base_url = simulated_llm(f"{PLAN}---\n{FINISH}\n")
    gantt = tmp_path / "ask.png"
    done = tomasulo(
        "ask", QUESTION, "--db", FACTS, "--base-url", base_url, "--model", "sim", "--dialect", "vllm",
        "--gantt", str(gantt),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert result_of(done.stdout) == "About 1.84 times."
    # what people read goes to standard output, the answer last; logs alone go to standard error
    assert "planner: writing plan 1" in done.stdout
    assert "task 3 math: done" in done.stdout
    assert "joiner: finish (task 3 has the ratio)" in done.stdout
    assert "3 of 3 tasks succeeded" in done.stdout
    assert done.stderr == ""
    assert gantt.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ask_configured_by_environment_with_json_output(simulated_llm: Callable[[str], str]) -> None:
    base_url = simulated_llm(f"{PLAN}---\n{FINISH}\n")
    env = clean_env(TOMASULO_BASE_URL=base_url, TOMASULO_MODEL="sim", TOMASULO_DIALECT="plain")
    done = tomasulo("ask", QUESTION, "--db", FACTS, "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["answer"] == "About 1.84 times."
    assert [(t["id"], t["tool"], t["status"]) for t in data["tasks"]] == [
        (1, "sql", "succeeded"),
        (2, "sql", "succeeded"),
        (3, "math", "succeeded"),
    ]
    assert data["tasks"][2]["value"] == 1.84
    assert data["usage"]["completion_tokens"] > 0 and "join()" in data["plans"][0]


def test_ask_whose_run_fails_exits_1(simulated_llm: Callable[[str], str]) -> None:
    base_url = simulated_llm('1. math(expression="1 / 0")\n2. join()\n')
    done = tomasulo("ask", "What is 1/0?", "--base-url", base_url, "--model", "sim", "--max-replans", "0")
    assert done.returncode == 1
    assert "task 1 math: failed" in done.stdout
    assert "error: the run stopped: replan bound reached (0)" in done.stderr


def test_bad_input_to_ask_and_simulate_llm_exits_2(tmp_path: Path) -> None:
    bad_json = tmp_path / "script.json"
    bad_json.write_text('{"not": "a list"}')
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    cases = [
        (("ask", "q"), "no LLM is configured"),
        (("ask", "q", "--base-url", "http://127.0.0.1:9/v1"), "missing: a model name"),
        (("ask", "q", *url, "--dialect", "gpt4"), "unknown dialect 'gpt4'"),
        (("ask", "q", *url, "--tools", "no_such_module:tools"), "cannot import module 'no_such_module'"),
        (("ask", "q", *url, "--gantt", "x.txt"), "--gantt x.txt: use a .png, .svg, .pdf or .html file"),
        (("simulate-llm", "--host", "0.0.0.0"), "refusing to listen on 0.0.0.0"),
        (("simulate-llm", "--script", str(tmp_path / "none.txt")), "cannot read the script"),
        (("simulate-llm", "--script", str(bad_json)), "a JSON script is a list of reply strings"),
    ]
    for (args, message), done in zip(cases, tomasulo_many(*(a for a, _ in cases)), strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert "TOMASULO_BASE_URL" in tomasulo_many(cases[0][0])[0].stderr


def test_ask_with_an_output_schema_prints_the_typed_answer(
    simulated_llm: Callable[[str], str], tmp_path: Path
) -> None:
    """``--output-schema`` makes the answer a JSON value of the schema's shape (the joiner's
    reply is checked against it), also with ``--instructions`` for the planner."""
    schema = {
        "type": "object",
        "properties": {"ratio": {"type": "number"}, "higher": {"type": "string"}},
        "required": ["ratio", "higher"],
    }
    path = tmp_path / "answer.schema.json"
    path.write_text(json.dumps(schema))
    typed = json.dumps(
        {"thought": "task 3 has it", "action": "finish", "answer": {"ratio": 1.84, "higher": "Everest"}}
    )
    base_url = simulated_llm(f"{PLAN}---\n{typed}\n")
    flags = ("--db", FACTS, "--base-url", base_url, "--model", "sim", "--dialect", "vllm")
    typed_flags = ("--output-schema", str(path), "--instructions", "Use SQL.", "--json")
    done = tomasulo("ask", QUESTION, *flags, *typed_flags)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["output"] == {"ratio": 1.84, "higher": "Everest"}
    assert json.loads(data["answer"]) == data["output"]


def test_a_bad_output_schema_exits_2_before_any_call(tmp_path: Path) -> None:
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    not_json, not_schema, a_list = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    not_json.write_text("{type: object")
    not_schema.write_text('{"type": "nope"}')
    a_list.write_text("[1]")
    cases = [
        (("ask", "q", *url, "--output-schema", str(not_json)), "a.json: Expecting property name"),
        (("ask", "q", *url, "--output-schema", str(not_schema)), "not a valid JSON schema"),
        (("ask", "q", *url, "--output-schema", str(a_list)), "a JSON schema is a JSON object"),
        (("ask", "q", *url, "--output-schema", str(tmp_path / "none.json")), "cannot read"),
    ]
    for (args, message), done in zip(cases, tomasulo_many(*(a for a, _ in cases)), strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
