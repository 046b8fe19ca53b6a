"""Every grammar engine we can run agrees with our strict parser.

Engines: python-lark on ``.lark()``; llguidance on ``.lark()``, on ``.gbnf()`` and on its own form
``.llguidance()`` (what :class:`TokenMasker` compiles); llama.cpp's own grammar sampler on
``.gbnf()`` (``-m llamacpp``, needs llama-cpp-python built by ``make test``).
"""

from __future__ import annotations

import functools
import importlib.util
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomasulo.grammar import Plan, Ref, Task, Template, TokenMasker, build_grammar, constrained_generate
from tomasulo.grammar._build import Node, tool_params
from tomasulo.tools import Toolset

from . import grammar_support as gs

MAX_TASKS = 4

# (case, plan text, valid?) against plan_tools() with max_tasks=4
CORPUS: list[tuple[str, str, bool]] = [
    ("one task", '1. search(query="Mount Everest")\n2. join()\n', True),
    ("positional and keyword", '1. search("a", limit=3)\n2. join()', True),
    ("end marker", "1. now()\n2. join()\n<END_OF_PLAN>\n", True),
    (
        "thoughts, refs, templates",
        'Thought: look both up\n1. search(query="Everest")\n2. search("K2")\n'
        'Thought: compare\n3. math(expression="${1.height_m} / ${2.height_m}", context=[$1.h, 2.5])\n'
        "Thought: done\n4. join()\n",
        True,
    ),
    (
        "nested object, union, enum, dotted and dashed names",
        '1. get-weather("Oslo", unit="celsius")\n2. math.factorial(n=$1.days[0])\n'
        '3. book({"name": "Ann", "age": 30}, 2, true, ["a", "${2}"], null)\n4. join()\n',
        True,
    ),
    ("escapes and dollars", '1. search("say \\"hi\\" \\u00e9 $5 $$")\n2. join()\n', True),
    ("forward reference", '1. search("a")\n2. math(expression=$3)\n3. join()\n', False),
    ("self reference", '1. search("a")\n2. search($2)\n3. join()\n', False),
    ("self reference in a string", '1. search("a")\n2. search("${2.x}")\n3. join()\n', False),
    ("reference in the first task", "1. search($1)\n2. join()\n", False),
    ("unknown tool", '1. fetch("a")\n2. join()\n', False),
    ("wrong enum value", '1. get-weather("Oslo", unit="kelvin")\n2. join()\n', False),
    ("wrong type", '1. math.factorial(n="five")\n2. join()\n', False),
    ("integer below minimum", '1. search("a", limit=0)\n2. join()\n', False),
    ("missing required argument", "1. search(limit=3)\n2. join()\n", False),
    ("missing nested required", '1. book({"age": 3})\n2. join()\n', False),
    ("text after join", '1. search("a")\n2. join()\n3. search("b")\n', False),
    ("id gap", '1. search("a")\n3. join()\n', False),
    ("ids not starting at 1", '2. search("a")\n3. join()\n', False),
    (
        "more tasks than max_tasks",
        "1. now()\n2. now()\n3. now()\n4. now()\n5. now()\n6. join()\n",
        False,
    ),
    ("no join", '1. search("a")\n', False),
    ("too many positionals", "1. math.factorial(1, 2)\n2. join()\n", False),
    ("float that overflows", '1. math(expression="x", context=[1e999])\n2. join()\n', False),
    ("long float mantissa", f'1. math(expression="x", context=[{"9" * 400}.5])\n2. join()\n', False),
    ("long integer", f'1. math(expression="x", context=[{"9" * 400}, 1e99, 2.5e-999])\n2. join()\n', True),
    ("trailing comma", '1. search("a", )\n2. join()\n', False),
]


@functools.cache
def corpus_grammar() -> Any:
    return build_grammar(gs.toolset("plan"), max_tasks=MAX_TASKS)


@pytest.mark.parametrize(("case", "text", "valid"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_parser_agrees_with_labels(case: str, text: str, valid: bool) -> None:
    assert gs.judge(text, gs.toolset("plan"), max_tasks=MAX_TASKS) is valid


@pytest.mark.parametrize(
    "engine", ["python-lark", "llguidance-lark", "llguidance-gbnf", "llguidance-llguidance"]
)
def test_corpus_every_engine_agrees_with_parser(engine: str) -> None:
    g = corpus_grammar()
    disagree = []
    for case, text, valid in CORPUS:
        if engine == "python-lark":
            got = gs.lark_accepts(g, text)
        else:
            got = gs.llg_accepts(g, engine.split("-")[1], text)
        if got is not valid:
            disagree.append(case)
    assert disagree == []


# Real-world schemas: names a plan cannot write are mapped (`first-name` -> first_name), Unicode
# names are written as they are, and `null` for an optional parameter means "not given".
NAMES_CORPUS: list[tuple[str, str, bool]] = [
    ("unicode keyword", '1. get_car(city="Oslo", año_vehiculo=2020)\n2. join()\n', True),
    ("mapped keywords", '1. get_car("Oslo", first_name="Ann", _type="suv")\n2. join()\n', True),
    ("null for optional", '1. get_car("Oslo", null, año_vehiculo=null)\n2. join()\n', True),
    ("null for optional by name", '1. get_car(city="Oslo", _type=null)\n2. join()\n', True),
    ("null for a nullable one", '1. get_car("Oslo", note=null)\n2. join()\n', True),
    ("null for required", "1. get_car(null)\n2. join()\n", False),
    ("source name", '1. get_car("Oslo", first-name="Ann")\n2. join()\n', False),
    ("source tool name", '1. get car("Oslo")\n2. join()\n', False),
    ("wrong type", '1. get_car("Oslo", año_vehiculo="new")\n2. join()\n', False),
]


@functools.cache
def names_tools() -> Toolset:
    return Toolset.from_schemas(
        [
            {
                "name": "get car",
                "parameters": {
                    "properties": {
                        "city": {"type": "String"},
                        "first-name": {"type": "string"},
                        "año_vehiculo": {"type": "long"},
                        "$type": {"type": "string", "enum": ["suv", "van"]},
                        "note": {"type": "string", "nullable": True},
                    },
                    "required": ["city"],
                },
            }
        ]
    )


@pytest.mark.parametrize("engine", ["parser", "python-lark", "llguidance-lark", "llguidance-gbnf"])
def test_real_world_names_every_engine_agrees_with_labels(engine: str) -> None:
    assert engine_disagreements(engine, names_tools(), NAMES_CORPUS) == []


def engine_disagreements(engine: str, tools: Toolset, corpus: list[tuple[str, str, bool]]) -> list[str]:
    """The cases of ``corpus`` that ``engine`` judges against their label."""
    g = build_grammar(tools, max_tasks=MAX_TASKS)
    disagree = []
    for case, text, valid in corpus:
        if engine == "parser":
            got = gs.judge(text, tools, max_tasks=MAX_TASKS)
        elif engine == "python-lark":
            got = gs.lark_accepts(g, text)
        else:
            got = gs.llg_accepts(g, engine.split("-")[1], text)
        if got is not valid:
            disagree.append(case)
    return disagree


# a replan: ids continue from 4, and tasks may reference the earlier plans' results
REPLAN: list[tuple[str, str, bool]] = [
    ("continues", '4. search("a")\n5. math(expression=$3)\n6. search($5.x)\n7. join()\n', True),
    ("earlier plan in a string", '4. search("${1.name} and ${3}")\n5. join()\n', True),
    ("single regular tool", "4. math.factorial(n=$2)\n5. math.factorial($4)\n6. join()\n", True),
    ("self reference", "4. search($4)\n5. join()\n", False),
    ("forward in a string", '4. search("a")\n5. search("x ${6} y")\n6. join()\n', False),
    ("longer id", '4. search("a")\n5. search($41)\n6. join()\n', False),
    ("restarts at 1", '1. search("a")\n2. join()\n', False),
    ("too many tasks", "4. now()\n5. now()\n6. now()\n7. now()\n8. join()\n", False),
]


@pytest.mark.parametrize("kind", ["lark", "gbnf", "llguidance"])
def test_replan_numbering_every_form_agrees_with_parser(kind: str) -> None:
    tools = gs.toolset("plan")
    g = build_grammar(tools, max_tasks=3, start_id=4)
    one_tool = build_grammar(Toolset([tools["math.factorial"]]), max_tasks=3, start_id=4)
    disagree = []
    for case, text, valid in REPLAN:
        grammar = one_tool if case == "single regular tool" else g
        assert gs.judge(text, grammar_tools(grammar, tools), max_tasks=3, start_id=4) is valid, case
        if gs.llg_accepts(grammar, kind, text) is not valid:
            disagree.append(case)
    assert disagree == []


def grammar_tools(grammar: Any, tools: Toolset) -> Toolset:
    return Toolset([tools[name] for name in grammar.tool_names])


@functools.cache
def llama_engine(tmp: str) -> gs.LlamaGrammarEngine:
    path = Path(tmp) / "vocab-4k.gguf"
    gs.write_vocab_gguf(path, 4096)
    return gs.LlamaGrammarEngine(path)


requires_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gguf") is None,
    reason="llama-cpp-python (and gguf) not installed: run scripts/install-llamacpp.sh (make test does)",
)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> gs.LlamaGrammarEngine:
    return llama_engine(str(tmp_path_factory.mktemp("gguf")))


@pytest.mark.llamacpp
@requires_llama
def test_corpus_llama_cpp_grammar_sampler_agrees(llama: gs.LlamaGrammarEngine) -> None:
    g = corpus_grammar()
    tok = gs.tokenizer(4096)
    disagree = [
        case for case, text, valid in CORPUS if llama.accepts(g.gbnf(), tok.encode(text).ids) is not valid
    ]
    assert disagree == []


@pytest.mark.llamacpp
@requires_llama
def test_real_world_names_llama_cpp_grammar_sampler_agrees(llama: gs.LlamaGrammarEngine) -> None:
    assert llama_disagreements(llama, names_tools(), NAMES_CORPUS) == []


def llama_disagreements(
    llama: gs.LlamaGrammarEngine, tools: Toolset, corpus: list[tuple[str, str, bool]]
) -> list[str]:
    """The cases of ``corpus`` that llama.cpp's grammar sampler judges against their label."""
    gbnf = build_grammar(tools, max_tasks=MAX_TASKS).gbnf()
    tok = gs.tokenizer(4096)
    return [case for case, text, valid in corpus if llama.accepts(gbnf, tok.encode(text).ids) is not valid]


# -- random decoding under each engine's mask ---------------------------------------------------

N_PLANS = 300
#: Sampled plans are kept short (references still reach back two tasks): time goes into tokens.
SAMPLE_TASKS = 3


@pytest.mark.parametrize("kind", ["lark", "gbnf", "llguidance"])
@pytest.mark.parametrize("toolset", sorted(gs.TOOLSETS))
def test_llguidance_random_plans_all_parse(toolset: str, kind: str) -> None:
    tools = gs.toolset(toolset)
    g = build_grammar(tools, max_tasks=SAMPLE_TASKS)
    # a PlanGrammar itself is compiled from its llguidance form
    source = {"lark": g.lark(), "gbnf": g.gbnf(), "llguidance": g}[kind]
    masker = TokenMasker(gs.tokenizer(4096), source)
    logits = gs.plan_logits(4096, seed=zlib.crc32(f"{toolset}-{kind}".encode()) % 1000, tools=tools)
    bad, complete, seen_refs = [], 0, 0
    for i in range(N_PLANS * 5 // 4):  # some random walks hit max_tokens; 300 must finish
        out = constrained_generate(logits, None, masker, max_tokens=600, seed=i)
        if not out.complete:
            continue
        complete += 1
        if not gs.judge(out.text, tools, max_tasks=SAMPLE_TASKS):
            bad.append(out.text)
        seen_refs += "$" in out.text
        if complete % 10 == 0:  # python-lark is slow: it checks every tenth plan
            assert gs.lark_accepts(g, out.text), out.text
        if complete == N_PLANS:
            break
    assert bad == []
    assert complete == N_PLANS
    assert seen_refs > 0


@pytest.mark.llamacpp
@requires_llama
@pytest.mark.parametrize("toolset", sorted(gs.TOOLSETS))
def test_llama_cpp_random_plans_all_parse(toolset: str, llama: gs.LlamaGrammarEngine) -> None:
    tools = gs.toolset(toolset)
    g = build_grammar(tools, max_tasks=SAMPLE_TASKS)
    tok = gs.tokenizer(4096)
    logits = gs.plan_logits(4096, seed=11, tools=tools)
    bad, complete = [], 0
    for _ in range(N_PLANS * 5 // 4):
        ids, done = llama.sample(g.gbnf(), logits, max_tokens=600)
        if not done:
            continue
        complete += 1
        text = tok.decode(ids)
        if not gs.judge(text, tools, max_tasks=SAMPLE_TASKS) and not duplicate_keys(text, tools):
            bad.append(text)
        if complete == N_PLANS:
            break
    assert bad == []
    assert complete == N_PLANS


def duplicate_keys(text: str, tools: Toolset) -> bool:
    """Whether the parser refuses ``text`` only for a repeated key in a free-form object: a
    context-free grammar cannot make keys distinct, so the check after parsing has that job."""
    from tomasulo.exceptions import PlanError
    from tomasulo.grammar import parse_plan

    try:
        parse_plan(text, tools, max_tasks=SAMPLE_TASKS)
    except PlanError as e:
        return "duplicate key" in e.message
    return False


# -- parser-accepted plans are accepted by every grammar (property) -----------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\u2028\u2029\x85"),
    max_size=12,
)


def _path() -> st.SearchStrategy[tuple[str | int, ...]]:
    ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True)
    return st.lists(st.one_of(ident, st.integers(0, 20)), max_size=2).map(tuple)


def _value(node: Node, task_id: int) -> st.SearchStrategy[Any]:
    refs = st.builds(Ref, st.integers(1, task_id - 1), _path()) if task_id > 1 else st.nothing()
    kind = node[0]
    if kind == "string":
        lit: st.SearchStrategy[Any] = _text
        if task_id > 1:
            # a template; a literal part never ends in "$" right before a reference
            part = _text.filter(lambda s: not s.endswith("$"))
            lit = st.one_of(
                _text,
                st.lists(
                    st.tuples(part, st.builds(Ref, st.integers(1, task_id - 1), _path())),
                    min_size=1,
                    max_size=2,
                ).map(lambda ps: Template(tuple(x for p in ps for x in p if x != ""))),
            )
    elif kind == "integer":
        lo, hi = node[1], node[2]
        lit = st.integers(-(10**6) if lo is None else lo, 10**6 if hi is None else hi)
    elif kind == "number":
        lit = st.one_of(
            st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3))
        )
    elif kind == "boolean":
        lit = st.booleans()
    elif kind == "null":
        lit = st.none()
    elif kind == "enum":
        import json

        lit = st.sampled_from([json.loads(t) for t in node[1]])
    elif kind == "union":
        lit = st.one_of(*(_value(n, task_id) for n in node[1]))
    elif kind == "array":
        lit = st.lists(
            _value(node[1], task_id), min_size=node[2], max_size=node[3] if node[3] is not None else 3
        )
    elif kind == "object":
        lit = st.fixed_dictionaries(
            {name: _value(sub, task_id) for name, sub, req in node[1] if req},
            optional={name: _value(sub, task_id) for name, sub, req in node[1] if not req},
        ).map(lambda d, order=[p[0] for p in node[1]]: {k: d[k] for k in order if k in d})
    elif kind == "object_any":
        lit = st.dictionaries(_text, st.one_of(st.none(), st.integers(-9, 9), _text), max_size=2)
    else:  # any JSON
        lit = st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(-99, 99), _text),
            lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(_text, inner, max_size=2)),
            max_leaves=4,
        )
    return st.one_of(lit, refs) if task_id > 1 else lit


@st.composite
def plans(draw: st.DrawFn, toolset: str) -> Plan:
    tools = gs.toolset(toolset)
    n = draw(st.integers(1, MAX_TASKS))
    thought = st.one_of(
        st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ,.$]{0,20}[A-Za-z.]", fullmatch=True)
    )
    tasks = []
    for task_id in range(1, n + 1):
        tool = draw(st.sampled_from(tools.names))
        params = tool_params(tools[tool].input_schema)
        values = {
            name: draw(_value(node, task_id)) for name, node, req in params if req or draw(st.booleans())
        }
        names = [p[0] for p in params]
        k = draw(st.integers(0, len(names)))
        positional = names[:k]
        if any(p not in values for p in positional):  # positionals must be a given prefix
            positional = []
        args = tuple(values[p] for p in positional)
        kwargs = {p: values[p] for p in names if p in values and p not in positional}
        tasks.append(Task(task_id, tool, args, kwargs, thought=draw(thought)))
    return Plan(tuple(tasks), join_id=n + 1, join_thought=draw(thought))


@pytest.mark.parametrize("toolset", sorted(gs.TOOLSETS))
def test_parser_accepted_plans_are_accepted_by_every_grammar(toolset: str) -> None:
    tools = gs.toolset(toolset)
    g = build_grammar(tools, max_tasks=MAX_TASKS)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plans(toolset), st.sampled_from(["", "<END_OF_PLAN>\n"]))
    def check(plan: Plan, end: str) -> None:
        text = plan.to_text() + end
        assert gs.judge(text, tools, max_tasks=MAX_TASKS), text
        assert gs.llg_accepts(g, "lark", text), text
        assert gs.llg_accepts(g, "gbnf", text), text
        assert gs.llg_accepts(g, "llguidance", text), text
        assert gs.lark_accepts(g, text), text

    check()


def test_tool_params_keep_schema_order() -> None:
    params = tool_params(gs.toolset("plan")["book"].input_schema)
    assert [p[0] for p in params] == ["guest", "nights", "vip", "tags", "note"]


# -- string length bounds ------------------------------------------------------------------------

LENGTHS: list[tuple[str, str, bool]] = [
    ("within bounds", '1. label("abc")\n2. join()\n', True),
    ("at the bounds", '1. label("ab")\n2. label("abcde")\n3. join()\n', True),
    ("too short", '1. label("a")\n2. join()\n', False),
    ("too long", '1. label("abcdef")\n2. join()\n', False),
    ("an escape is one character", '1. label("a\\n\\u00e9")\n2. join()\n', True),
    ("wide characters count once", '1. label("日本語")\n2. join()\n', True),
    ("a dollar counts", '1. label("a$b")\n2. join()\n', True),
    ("a template is checked later", '1. label("ab")\n2. label("${1} and ${1} again")\n3. join()\n', True),
    ("optional bounded", '1. label("abc", code="XY")\n2. join()\n', True),
    ("optional too long", '1. label("abc", code="XYZ")\n2. join()\n', False),
]


@functools.cache
def length_tools() -> Toolset:
    return Toolset.from_schemas(
        [
            {
                "name": "label",
                "parameters": {
                    "properties": {
                        "text": {"type": "string", "minLength": 2, "maxLength": 5},
                        "code": {"type": "string", "maxLength": 2},
                    },
                    "required": ["text"],
                },
            }
        ]
    )


@pytest.mark.parametrize("engine", ["parser", "python-lark", "llguidance-lark", "llguidance-gbnf"])
def test_string_length_bounds_every_engine_agrees_with_labels(engine: str) -> None:
    assert engine_disagreements(engine, length_tools(), LENGTHS) == []


@pytest.mark.llamacpp
@requires_llama
def test_string_length_bounds_llama_cpp_grammar_sampler_agrees(llama: gs.LlamaGrammarEngine) -> None:
    assert llama_disagreements(llama, length_tools(), LENGTHS) == []
