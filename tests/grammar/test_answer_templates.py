"""Answer templates: ``N. join("Everest is ${5} times as tall")`` in every form of the plan language.

The template may only interpolate earlier tasks; every grammar engine, the text parser (whole
and streaming), the JSON dialect and its schema agree on that.
"""

from __future__ import annotations

import jsonschema
import pytest

from tomasulo.exceptions import ForwardReferenceError, PlanSyntaxError
from tomasulo.grammar import (
    PlanStream,
    Ref,
    Template,
    answer_text,
    build_grammar,
    parse_json_plan,
    parse_plan,
)

from . import grammar_support as gs
from .plan_tools import plan_tools
from .test_engines import MAX_TASKS, engine_disagreements, llama_disagreements, requires_llama

TOOLS = plan_tools()

# (case, plan text, valid?) against plan_tools() with max_tasks=4
TEMPLATES: list[tuple[str, str, bool]] = [
    ("plain join", '1. search("a")\n2. join()\n', True),
    ("template", '1. search("a")\n2. search("b")\n3. join("${1} and ${2.x[0]} ok")\n', True),
    ("template with thought and end marker", 'Thought: say it\n1. join("just text")\n<END_OF_PLAN>\n', True),
    ("text only", '1. join("no tool was needed")\n', True),
    ("empty answer", '1. search("a")\n2. join("")\n', True),
    ("escaped dollar brace", '1. search("a")\n2. join("costs \\u0024{1} or $5")\n', True),
    ("template at the task cap", '1. now()\n2. now()\n3. now()\n4. now()\n5. join("${4}")\n', True),
    ("refers to the join", '1. search("a")\n2. join("${2}")\n', False),
    ("refers to a later id", '1. search("a")\n2. join("${3}")\n', False),
    ("reference in the first line", '1. join("${1}")\n', False),
    ("bare reference", '1. search("a")\n2. join($1)\n', False),
    ("number", '1. search("a")\n2. join(3)\n', False),
    ("two strings", '1. search("a")\n2. join("a", "b")\n', False),
    ("keyword", '1. search("a")\n2. join(answer="a")\n', False),
]


def test_template_labels_match_the_parser() -> None:
    assert engine_disagreements("parser", TOOLS, TEMPLATES) == []


ENGINES = ["python-lark", "llguidance-lark", "llguidance-gbnf", "llguidance-llguidance"]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_agrees_on_templates(engine: str) -> None:
    assert engine_disagreements(engine, TOOLS, TEMPLATES) == []


@pytest.mark.llamacpp
@requires_llama
def test_llama_cpp_agrees_on_templates(tmp_path_factory: pytest.TempPathFactory) -> None:
    from .test_engines import llama_engine

    llama = llama_engine(str(tmp_path_factory.mktemp("gguf")))
    assert llama_disagreements(llama, TOOLS, TEMPLATES) == []


REPLAN: list[tuple[str, str, bool]] = [
    ("earlier plan", '4. search("a")\n5. join("${1}, ${3} and ${4}")\n', True),
    ("only earlier plans", '4. join("${3.name}")\n', True),
    ("forward", '4. search("a")\n5. join("${5}")\n', False),
]


@pytest.mark.parametrize("kind", ["lark", "gbnf", "llguidance"])
def test_replan_templates_reach_earlier_plans(kind: str) -> None:
    g = build_grammar(TOOLS, max_tasks=3, start_id=4)
    for case, text, valid in REPLAN:
        assert gs.judge(text, TOOLS, max_tasks=3, start_id=4) is valid, case
        assert gs.llg_accepts(g, kind, text) is valid, case


def test_parsed_template_and_round_trip() -> None:
    text = '1. search("Everest")\n2. search("K2")\nThought: compare\n3. join("E: ${1.h} vs ${2}")\n'
    plan = parse_plan(text, TOOLS)
    assert plan.joined and plan.join_id == 3 and plan.join_thought == "compare"
    assert plan.answer == Template(("E: ", Ref(1, ("h",)), " vs ", Ref(2)))
    assert plan.to_text() == text
    assert parse_plan(plan.to_text(), TOOLS) == plan
    assert parse_plan('1. search("a")\n2. join()\n', TOOLS).answer is None


def test_streaming_parser_reads_the_template_at_its_parenthesis() -> None:
    s = PlanStream(TOOLS)
    s.feed('1. search("a")\n2. join("it is ${1')
    assert not s.joined
    s.feed('} (so)")')  # the parenthesis inside the string does not end the line
    assert s.joined and s.plan.answer == Template(("it is ", Ref(1), " (so)"))
    s.close()


def test_forward_reference_in_a_template_is_placed() -> None:
    with pytest.raises(ForwardReferenceError) as e:
        parse_plan('1. search("a")\n2. join("x ${1} y ${2}")\n', TOOLS)
    assert (e.value.line, e.value.column) == (2, 19)
    assert "the answer of join() (task 2) refers to task 2" in e.value.message


def test_wrong_join_arguments_say_what_join_takes() -> None:
    with pytest.raises(PlanSyntaxError) as e:
        parse_plan('1. search("a")\n2. join("a", 3)\n', TOOLS)
    assert (e.value.line, e.value.column) == (2, 14)
    assert "at most one argument" in e.value.message
    with pytest.raises(PlanSyntaxError, match="must be a string"):
        parse_plan('1. search("a")\n2. join([1])\n', TOOLS)


def test_compat_join_with_a_quoted_reference() -> None:
    plan = parse_plan("1. search('a')\n2. join('$1')\n", TOOLS, compat=True)
    assert plan.answer == Template((Ref(1),))


def test_json_dialect_answer() -> None:
    doc = '{"tasks": [{"id": 1, "tool": "search", "args": {"query": "a"}}],\n "answer": "found ${1}"}'
    plan = parse_json_plan(doc, TOOLS)
    assert plan.joined and plan.answer == Template(("found ", Ref(1)))
    schema = build_grammar(TOOLS, max_tasks=MAX_TASKS).json_schema()
    jsonschema.validate(__import__("json").loads(doc), schema)
    assert parse_json_plan('{"tasks": [{"id": 1, "tool": "now", "args": {}}]}', TOOLS).answer is None


def test_json_dialect_answer_refers_only_to_the_plans_tasks() -> None:
    doc = '{"tasks": [{"id": 1, "tool": "search", "args": {"query": "a"}}],\n "answer": "x ${2}"}'
    with pytest.raises(ForwardReferenceError) as e:
        parse_json_plan(doc, TOOLS)
    assert (e.value.line, e.value.column) == (2, 15)
    with pytest.raises(PlanSyntaxError, match='"answer" must be a string'):
        parse_json_plan('{"tasks": [], "answer": 3}', TOOLS)


def test_answer_text_writes_numbers_for_readers() -> None:
    assert answer_text(8848.86 / 5895) == "1.50107888040712"
    assert answer_text(0.1 + 0.2) == "0.3"
    assert answer_text(3.0) == "3"
    assert answer_text(12) == "12"
    assert answer_text("text") == "text"
    assert answer_text({"a": [1, None]}) == '{"a":[1,null]}'
    assert answer_text(True) == "true"
    t = Template(("ratio ", Ref(1), "; ", Ref(2, ("n",))))
    results = {1: 0.1 + 0.2, 2: {"n": 2.50}}
    assert t.render(lambda r: r.select(results[r.task_id]), answer_text) == "ratio 0.3; 2.5"
