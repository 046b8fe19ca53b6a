"""The template benchmark's plans: valid under the workload's grammar, answered by their template."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tomasulo.grammar import Ref, build_grammar, parse_plan
from tomasulo.testing import GrammarConstraint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _templates import template_oracle, template_plan_text  # noqa: E402
from _workloads import Item, build_steps, make_tools, oracle  # noqa: E402

TOOLS = make_tools(median=0.5, sigma=0.5, seed=0)
PQA = "If Mariana Trench was 20% shallower and the Puerto Rico Trench was 20% deeper, which is shallower?"
MOVIE = "Find a movie similar to Heat, Alien, Fargo, Up\nOptions:\nJaws\nBig\nRocky\nSeven\n"


@pytest.mark.parametrize(("workload", "question"), [("parallelqa", PQA), ("movie", MOVIE)])
def test_template_plans_parse_and_pass_the_grammar(workload: str, question: str) -> None:
    it = Item(workload, "1", question, "x", build_steps(workload, question))
    text = template_plan_text(it)
    plan = parse_plan(text, TOOLS)
    assert plan.answer is not None and plan.join_id == it.join_id
    refs = {r.task_id for r in plan.answer.refs if isinstance(r, Ref)}
    assert refs == ({it.steps[-1].id} if workload == "parallelqa" else {s.id for s in it.steps})
    assert GrammarConstraint("gbnf", build_grammar(TOOLS).gbnf(), field="grammar").check(text) is None


def test_the_template_oracle_is_the_stream_oracle_without_the_joiner() -> None:
    it = Item("movie", "1", MOVIE, "x", build_steps("movie", MOVIE))
    durations = {s.id: 0.5 for s in it.steps}
    with_join = oracle(it, durations, ttft=0.3, tps=50)
    bound = template_oracle(it, durations, ttft=0.3, tps=50)
    assert bound >= max(start + 0.5 for start in with_join.starts.values())  # every task is done
    assert bound < with_join.makespan  # and no joiner call follows
