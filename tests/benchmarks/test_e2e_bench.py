"""The end-to-end benchmark: its workloads, scripted model and oracle, and a small real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tomasulo.grammar import build_grammar, parse_plan
from tomasulo.planner import PlanContext, joiner_messages, planner_messages, tool_specs, turn_messages
from tomasulo.testing import GrammarConstraint, split_tokens

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _workloads import (  # noqa: E402
    Item,
    build_steps,
    classify,
    default_datasets,
    make_replier,
    make_tools,
    oracle,
    tool_delay,
)

DATASETS = default_datasets(ROOT)
TOOLS = make_tools(median=0.5, sigma=0.5, seed=0)
PQA = "If Mariana Trench was 20% shallower and the Puerto Rico Trench was 20% deeper, which is shallower?"
MOVIE = "Find a movie similar to Heat, Alien, Fargo, Up\nOptions:\nJaws\nBig\nRocky\nSeven\n"


def item(workload: str, question: str, branch: int = 2) -> Item:
    return Item(workload, "1", question, "Mariana Trench", build_steps(workload, question, branch))


def test_parallelqa_shape_fans_out_branch_searches_each_with_a_math_step() -> None:
    it = item("parallelqa", PQA, branch=3)
    plan = parse_plan(it.plan_text(), TOOLS)
    assert [t.tool for t in plan.tasks] == ["search"] * 3 + ["math"] * 4
    assert it.steps[0].key == "Mariana Trench" and it.steps[1].key == "Puerto Rico Trench"
    assert [s.deps for s in it.steps[3:]] == [(1,), (2,), (3,), (4, 5, 6)]


def test_movie_shape_searches_every_movie_then_joins() -> None:
    it = item("movie", MOVIE)
    assert [s.key for s in it.steps] == ["Heat", "Alien", "Fargo", "Up", "Jaws", "Big", "Rocky", "Seven"]
    assert it.plan_text().endswith("9. join()\n")


@pytest.mark.parametrize("mode", ["plan", "react", "parallel_fc"])
def test_scripted_replies_pass_the_grammar_the_orchestrator_sends(mode: str) -> None:
    """Each reply is what the simulator, enforcing the request's grammar, would accept (the
    turn modes' plan-text turns, as on plain servers)."""
    it = item("parallelqa", PQA, branch=2)
    replies = make_replier([it])
    start, turns = 1, []
    while True:
        max_tasks = 1 if mode == "react" else 32
        ctx = PlanContext(
            it.question, start_id=start, max_tasks=max_tasks, mode="plan" if mode == "plan" else mode
        )  # type: ignore[arg-type]
        if start > 1:
            ctx.plans = ["..."]
        body = {"messages": planner_messages(TOOLS, ctx, output="text")}
        got, kind, reply = replies(body)
        text = reply.text or ""
        assert got is it and kind == mode
        grammar = build_grammar(TOOLS, max_tasks=max_tasks, start_id=start).gbnf()
        assert GrammarConstraint("gbnf", grammar, field="grammar").check(text) is None, text
        tasks = parse_plan(text, TOOLS, start_id=start).tasks
        turns.append([t.id for t in tasks])
        if mode == "plan" or not tasks:
            break
        start = tasks[-1].id + 1
    expected = {
        "plan": [[1, 2, 3, 4, 5]],
        "react": [[1], [2], [3], [4], [5], []],
        "parallel_fc": [[1, 2], [3, 4], [5], []],
    }[mode]
    assert turns == expected


def test_joiner_prompt_gets_the_datasets_answer() -> None:
    it = item("hotpotqa", "Were Scott Derrickson and Ed Wood of the same nationality?")
    prefix = planner_messages(TOOLS, PlanContext(it.question), output="text")
    body = {"messages": joiner_messages(it.question, it.plan_text(), [], prefix=prefix)}
    assert classify(body)[0] == "join"
    assert json.loads(make_replier([it])(body)[2].text or "")["answer"] == it.answer


@pytest.mark.parametrize("mode", ["react", "parallel_fc"])
def test_native_turns_call_the_dag_in_turns_and_answer_in_the_last(mode: str) -> None:
    """The scripted model answers native tool-calling turns: one call (react) or one level
    (parallel_fc) per turn, earlier results copied into the arguments, then the answer."""
    it = item("parallelqa", PQA, branch=2)
    replies = make_replier([it])
    messages: list[dict[str, Any]] = turn_messages(it.question, mode)
    turns: list[list[str]] = []
    while True:
        body = {
            "messages": messages,
            "tools": tool_specs(TOOLS),
            "parallel_tool_calls": mode == "parallel_fc",
        }
        got, kind, reply = replies(body)
        assert got is it and kind == mode
        if not reply.tool_calls:
            assert reply.text == it.answer
            break
        turns.append([c.id or "" for c in reply.tool_calls])
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
            for c in reply.tool_calls
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for c in reply.tool_calls:
            args = dict(c.arguments) if not isinstance(c.arguments, str) else {}
            if c.name == "math" and c.id == "call_3":  # math after search 1: the sentence it needs
                assert args["context"] == ["Its best-known measured quantity is about 3 in the usual unit."]
            result = "X is known. Its best-known measured quantity is about 3 in the usual unit. More."
            messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
    expected = {
        "react": [["call_1"], ["call_2"], ["call_3"], ["call_4"], ["call_5"]],
        "parallel_fc": [["call_1", "call_2"], ["call_3", "call_4"], ["call_5"]],
    }[mode]
    assert turns == expected


def test_tool_latency_is_a_deterministic_log_normal_with_the_given_median() -> None:
    delays = sorted(tool_delay("search", f"e{i}", median=0.5, sigma=0.5, seed=0) for i in range(2001))
    assert abs(delays[1000] - 0.5) < 0.03
    assert delays[0] < 0.25 and delays[-1] > 1.0  # spread, not a constant
    assert tool_delay("search", "x", median=0.5, sigma=0.5, seed=0) == tool_delay(
        "search", "x", median=0.5, sigma=0.5, seed=0
    )


def test_oracle_starts_each_task_at_its_line_or_its_inputs() -> None:
    it = item("parallelqa", PQA, branch=2)  # 1,2 search; 3(1), 4(2); 5(3,4)
    text = it.plan_text()
    ttft, tps = 0.5, 10.0

    def emitted(line: str) -> float:
        end = text.index(line) + len(line)
        return ttft + (len(split_tokens(text[:end])) - 1) / tps

    lines = [s.line() for s in it.steps]
    durations = {1: 30.0, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.4}
    bound = oracle(it, durations, ttft=ttft, tps=tps)
    assert bound.starts[1] == pytest.approx(emitted(lines[0]))
    assert bound.starts[4] == pytest.approx(emitted(lines[3]))  # its input finished long before
    assert bound.starts[3] == pytest.approx(emitted(lines[0]) + 30.0)  # waits for search 1
    assert bound.starts[5] == pytest.approx(bound.starts[3] + 0.2)
    joiner = ttft + (len(split_tokens(it.joiner_reply())) - 1) / tps
    assert bound.makespan == pytest.approx(bound.starts[5] + 0.4 + joiner)


@pytest.mark.skipif(not DATASETS.is_dir(), reason="the shared datasets are not next to the project")
def test_the_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    """A small real run: every mode finishes with the dataset's answer and the report is complete."""
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "e2e_bench.py"), "--n", "1", "--presets", "flat",
        "llama-8b-1xh100", "--ttft", "0.02", "--tps", "1000", "--tool-median", "0.05",
        "--workloads", "hotpotqa", "movie", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for mode in ("stream", "plan_then_execute", "react", "parallel_fc"):
        assert (tmp_path / f"gantt-flat-movie-{mode}.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "e2e-summary.json").read_text())
    stats = {(s["preset"], s["workload"], s["mode"]): s for s in summary["stats"]}
    assert all(s["runs"] == 1 and s["failed"] == 0 for s in stats.values())
    for preset in ("flat", "llama-8b-1xh100"):
        movie_stream, movie_react = stats[preset, "movie", "stream"], stats[preset, "movie", "react"]
        assert movie_stream["calls"] == 2 and movie_react["calls"] == 9  # 8 searches, then the answer
        assert movie_stream["makespan"] < movie_react["makespan"]
        assert movie_stream["makespan"] >= movie_stream["oracle"]  # the oracle is a lower bound
        assert movie_stream["oracle_no_join"] < movie_stream["oracle"]
        assert movie_stream["tokens"] < movie_react["tokens"]
        assert 1 < movie_react["ceiling"] and 0 < movie_react["of_ceiling"] <= 1.0
    assert stats["flat", "movie", "react"]["cached"] == 0  # no prefix cache in the flat model
    assert stats["llama-8b-1xh100", "movie", "react"]["cached"] > 0  # each turn extends the last
    assert "goals" in proc.stdout and "streaming uses no more tokens than react" in proc.stdout
