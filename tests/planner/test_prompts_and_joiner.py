"""Planner prompts and the joiner's decision parsing."""

from __future__ import annotations

import pytest

from tomasulo.exceptions import LLMResponseError
from tomasulo.grammar import parse_plan
from tomasulo.planner import (
    PlanContext,
    TaskReport,
    joiner_messages,
    parse_decision,
    planner_messages,
    tool_catalog,
)
from tomasulo.testing import PrefixCache, split_tokens
from tomasulo.tools import Toolset, tool


@tool
def search(query: str, limit: int = 3) -> list[str]:
    """Search an encyclopedia.

    Args:
        query: what to look for.
        limit: how many passages.
    """
    return []


TOOLS = Toolset([search])


def test_catalog_lists_signatures_and_parameter_descriptions() -> None:
    text = tool_catalog(TOOLS)
    assert "search(query: string, limit?: integer)" in text
    assert "Search an encyclopedia." in text
    assert "query: what to look for." in text


def test_first_plan_prompt_states_the_format_and_the_question() -> None:
    system, user = planner_messages(TOOLS, PlanContext("How tall is K2?"), output="text")
    assert "Task numbers start at 1" in system["content"]
    assert "join()" in system["content"]
    assert user["content"] == "Question: How tall is K2?"


def test_replan_prompt_carries_plan_results_interrupt_and_numbering() -> None:
    plan = parse_plan('1. search(query="K2")\n2. search(query="Everest")\n3. join()\n', TOOLS)
    reports = [
        TaskReport(plan.tasks[0], "succeeded", ["8611 m"]),
        TaskReport(plan.tasks[1], "failed", message="task 2 (search) timed out"),
    ]
    ctx = PlanContext(
        "Which is taller?", start_id=4, plans=[plan.to_text()], reports=reports, interrupts=["task 2 failed"]
    )
    _, _, plan_turn, user = planner_messages(TOOLS, ctx, output="text")
    assert plan_turn["role"] == "assistant" and '1. search(query="K2")' in plan_turn["content"]
    body = user["content"]
    assert '$1 = search(query="K2") -> ["8611 m"]' in body
    assert "$2 = " in body and "FAILED: task 2 (search) timed out" in body
    assert "Interrupted: task 2 failed" in body
    assert "Continue the plan from task 4" in body


def test_json_output_prompt_describes_the_json_dialect() -> None:
    system, user = planner_messages(TOOLS, PlanContext("q", start_id=3), output="json")
    assert '{"tasks": [{"id": 1' in system["content"]
    assert "Number the tasks from 3." in user["content"]
    assert '{"$ref": k}' in system["content"]


@pytest.mark.parametrize(
    ("text", "action", "payload"),
    [
        ('{"thought": "ok", "action": "finish", "answer": "42"}', "finish", "42"),
        ('Sure! {"thought": "", "action": "replan", "feedback": "need K2"} done', "replan", "need K2"),
        ("Thought: done\nAction: Finish(8611 metres)", "finish", "8611 metres"),
        ('Finish("yes")', "finish", "yes"),
    ],
)
def test_joiner_decisions(text: str, action: str, payload: str) -> None:
    d = parse_decision(text)
    assert d.action == action
    assert (d.answer if action == "finish" else d.feedback) == payload


def test_joiner_garbage_is_a_clear_error() -> None:
    with pytest.raises(LLMResponseError, match="neither a decision"):
        parse_decision("I like turtles")


def _prompt(messages: list[dict[str, str]]) -> list[str]:
    """The prompt as the simulator tokenizes it (contents joined by newlines)."""
    return split_tokens("\n".join(m["content"] for m in messages))


def test_replanner_and_joiner_prompts_extend_the_planners_prompt() -> None:
    """A replan and the joiner start with the planner's messages, so a prefix cache serves them."""
    plan = parse_plan('1. search(query="K2")\n2. search(query="Everest")\n3. join()\n', TOOLS)
    reports = [TaskReport(plan.tasks[0], "succeeded", ["8611 m"]), TaskReport(plan.tasks[1], "failed")]
    first = planner_messages(TOOLS, PlanContext("Which is taller?"), output="text")
    replan = planner_messages(
        TOOLS,
        PlanContext(
            "Which is taller?", start_id=4, plans=[plan.to_text()], reports=reports, interrupts=["x"]
        ),
        output="text",
    )
    join = joiner_messages("Which is taller?", plan, reports, prefix=first)
    assert replan[:2] == first and join[:2] == first
    assert replan[2] == join[2] == {"role": "assistant", "content": plan.to_text().rstrip()}
    assert "You are now the joiner" in join[-1]["content"] and '"action": "finish"' in join[-1]["content"]
    cache = PrefixCache(capacity_tokens=100_000, block_tokens=16)
    cache.lookup(_prompt(first))
    # whole blocks before the last token (which may join with the text that follows it)
    shared = (len(_prompt(first)) - 1) // 16 * 16
    assert cache.lookup(_prompt(replan)) >= shared
    assert cache.lookup(_prompt(join)) >= shared


def test_the_shared_prefix_does_not_change_with_the_next_task_number() -> None:
    one = planner_messages(TOOLS, PlanContext("q", plans=['1. search(query="a")'], start_id=2), output="text")
    two = planner_messages(TOOLS, PlanContext("q", plans=['1. search(query="a")'], start_id=9), output="text")
    assert one[:3] == two[:3] and one[3] != two[3]


def test_joiner_without_a_prefix_keeps_its_own_short_prompt() -> None:
    plan = parse_plan('1. search(query="K2")\n2. join()\n', TOOLS)
    system, user = joiner_messages("How tall?", plan, [TaskReport(plan.tasks[0], "succeeded", "8611 m")])
    assert system["content"].startswith("You are the joiner")
    assert user["content"].startswith("Question: How tall?")
