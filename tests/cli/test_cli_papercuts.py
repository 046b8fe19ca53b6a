"""The command as a new user meets it: flags read as flags, -h, --version, the same model flags
for `run` and `ask`, logs apart from what people read, and --json without Python reprs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, clean_env, result_of, tomasulo, tomasulo_many

import tomasulo as package

EXAMPLES = ROOT / "examples"
FINISH = json.dumps({"thought": "done", "action": "finish", "answer": "four"})


def test_flags_have_no_type_in_the_help_and_h_is_help() -> None:
    runs, asks, top, short = tomasulo_many(("run", "--help"), ("ask", "--help"), ("--help",), ("ask", "-h"))
    for done in (runs, asks, top, short):
        assert done.returncode == 0, done.stderr
        assert "<bool>" not in done.stdout
    assert short.stdout == asks.stdout
    assert re.search(r"--json\s+Machine-readable", asks.stdout)
    assert re.search(r"--builtins\s+--no-builtins\s+Offer math", asks.stdout)
    assert re.search(r"--help\s+-h\s+Show this message", top.stdout)


def test_version() -> None:
    done = tomasulo("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"tomasulo {package.__version__}"


def test_run_takes_the_model_flags_ask_takes() -> None:
    def options(text: str) -> set[str]:
        return set(re.findall(r"--[a-z][a-z-]+", text))

    runs, asks = tomasulo_many(("run", "--help"), ("ask", "--help"))
    model_flags = {"--base-url", "--model", "--dialect", "--api-key", "--api-key-env"}
    assert model_flags <= options(asks.stdout)
    assert model_flags <= options(runs.stdout)


def test_api_key_env_names_a_variable_that_must_be_set(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text("steps:\n  - query: what is 2 + 2?\n")
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    ask, run = tomasulo_many(
        ("ask", "q", *url, "--api-key-env", "NO_SUCH_KEY_VAR"),
        ("run", str(workflow), *url, "--api-key-env", "NO_SUCH_KEY_VAR"),
    )
    for done in (ask, run):
        assert done.returncode == 2
        assert "--api-key-env NO_SUCH_KEY_VAR: no such environment variable is set" in done.stderr


def test_api_key_env_sends_the_key_from_that_variable(
    simulated_llm: Callable[[str], str], tmp_path: Path
) -> None:
    base_url = simulated_llm(f'1. math(expression="2 + 2")\n2. join()\n---\n{FINISH}\n')
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "tools: [math]\nsteps:\n  - id: q\n    query: what is 2 + 2?\noutputs:\n  answer: q\n"
    )
    done = tomasulo(
        "run", str(workflow), "--base-url", base_url, "--model", "sim", "--api-key-env", "MY_KEY",
        env=clean_env(MY_KEY="sk-test"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(result_of(done.stdout)) == {"answer": "four"}


def test_api_key_env_is_read_and_api_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from tomasulo.cli import _model_flags

    monkeypatch.setenv("MY_KEY", "sk-from-env")
    assert _model_flags(None, None, None, None, "MY_KEY")["api_key"] == "sk-from-env"
    assert _model_flags(None, None, None, "sk-flag", "MY_KEY")["api_key"] == "sk-flag"


def test_logs_go_to_standard_error_and_what_people_read_to_standard_output() -> None:
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-replans", "0")
    plain, as_json, quiet = tomasulo_many(
        ("ask", "what is 2 + 2?", *url),
        ("ask", "what is 2 + 2?", *url, "--json"),
        ("--log-level", "error", "ask", "what is 2 + 2?", *url),
    )
    for done in (plain, as_json, quiet):
        assert done.returncode == 1, done.stderr
    logs = [json.loads(line) for line in plain.stderr.splitlines() if line.startswith("{")]
    assert logs and all(r["logger"].startswith("tomasulo") for r in logs)
    assert any(r["event"] == "llm.retry" for r in logs)
    assert "llm.retry" not in plain.stdout  # no log line among the report
    assert "planner: writing plan 1" in plain.stdout
    assert "error: the run failed" in plain.stderr
    json.loads(as_json.stdout)  # standard output holds one JSON document and nothing else
    assert "llm.retry" not in quiet.stderr


def test_json_output_has_no_python_reprs() -> None:
    url = ("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-replans", "0")
    done = tomasulo("ask", "what is 2 + 2?", *url, "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    reason = data["reason"]
    assert "ConnectError: All connection attempts failed" in reason, reason
    assert not re.search(r"\w+Error\('", done.stdout), done.stdout
