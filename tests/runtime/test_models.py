"""The model protocol: the planner and joiner see a ``Model``, so an ``LLM`` can be wrapped
(counted, fallen back from), and the joiner can have a model of its own. Every model here is a
real ``LLM`` talking HTTP to SimulatedLLM on loopback; the wrappers are what a user would write."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import anyio
import pytest

from tomasulo.exceptions import ConfigError, LLMError
from tomasulo.planner import LLM, GrammarForm, GrammarSpec, Model, PlanContext, Planner, RetryPolicy, Usage
from tomasulo.runtime import LLMCallFinished, LLMCallStarted, Orchestrator
from tomasulo.testing import Latency, Reply, SimulatedLLM

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    '1. search(query="everest")\n'
    '2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n'
    "4. join()\n"
)
FAST = Latency(ttft=0.01, tokens_per_second=2000)
ONE_TRY = RetryPolicy(attempts=1)


def finish(answer: str) -> str:
    return json.dumps({"thought": "the results answer it", "action": "finish", "answer": answer})


class Counted:
    """Counts the calls it passes on to the model it wraps (instrumentation)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.streams = 0
        self.completions = 0

    @property
    def model(self) -> str:
        return f"counted:{self.inner.model}"

    def grammar_form(self) -> GrammarForm | None:
        return self.inner.grammar_form()

    async def stream(
        self,
        messages: str | Sequence[Mapping[str, str]],
        *,
        grammar: GrammarSpec | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
        watch: Callable[[Usage], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        self.streams += 1
        chunks = self.inner.stream(
            messages, grammar=grammar, max_tokens=max_tokens, stop=stop, usage=usage, watch=watch
        )
        async with aclosing(chunks) as texts:
            async for text in texts:
                yield text

    async def complete(
        self,
        messages: str | Sequence[Mapping[str, str]],
        *,
        grammar: GrammarSpec | None = None,
        json_schema: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
        usage: Usage | None = None,
    ) -> str:
        self.completions += 1
        return await self.inner.complete(
            messages, grammar=grammar, json_schema=json_schema, max_tokens=max_tokens, stop=stop, usage=usage
        )


class Fallback:
    """The first model, and the second when the first fails before it wrote anything."""

    def __init__(self, first: Model, second: Model) -> None:
        self.first, self.second = first, second
        self.fell_back: list[str] = []

    @property
    def model(self) -> str:
        return self.first.model

    def grammar_form(self) -> GrammarForm | None:
        return self.first.grammar_form()

    async def stream(self, messages: Any, **kw: Any) -> AsyncGenerator[str, None]:
        wrote = False
        try:
            async with aclosing(self.first.stream(messages, **kw)) as texts:
                async for text in texts:
                    wrote = True
                    yield text
            return
        except LLMError as e:
            if wrote:
                raise
            self.fell_back.append(f"stream: {type(e).__name__}")
        async with aclosing(self.second.stream(messages, **kw)) as texts:
            async for text in texts:
                yield text

    async def complete(self, messages: Any, **kw: Any) -> str:
        try:
            return await self.first.complete(messages, **kw)
        except LLMError as e:
            self.fell_back.append(f"complete: {type(e).__name__}")
            return await self.second.complete(messages, **kw)


def test_an_llm_is_a_model_and_the_wrappers_are_too() -> None:
    llm = LLM("http://127.0.0.1:9/v1", model="m", dialect="vllm")
    assert isinstance(llm, Model) and isinstance(Counted(llm), Model)
    assert llm.grammar_form() == "gbnf"
    assert LLM("http://127.0.0.1:9/v1", model="m", dialect="ollama").grammar_form() == "json_schema"
    assert LLM("http://127.0.0.1:9/v1", model="m", dialect="plain").grammar_form() is None


async def test_a_wrapped_llm_plans_and_joins_a_run() -> None:
    lab = Lab()
    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with sim.serve() as url, LLM(url, model="sim", dialect="vllm") as llm:
            counted = Counted(llm)
            result = await Orchestrator(lab.tools, counted).run("How many times taller is Everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011" and result.results[3] == 1.5011
    assert (counted.streams, counted.completions) == (1, 1)
    started = [e for e in result.timeline if isinstance(e, LLMCallStarted)]
    assert [(e.purpose, e.model) for e in started] == [("plan", "counted:sim"), ("join", "counted:sim")]


async def test_a_fallback_model_answers_when_the_first_server_errors() -> None:
    lab = Lab()
    down = SimulatedLLM([Reply.server_error(503), Reply.server_error(503)])
    up = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with down.serve() as bad, up.serve() as good:
            async with (
                LLM(bad, model="down", dialect="vllm", retry=ONE_TRY) as first,
                LLM(good, model="up", dialect="vllm") as second,
            ):
                model = Fallback(first, second)
                result = await Orchestrator(lab.tools, model).run("How many times taller is Everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011"
    assert model.fell_back == ["stream: LLMStatusError", "complete: LLMStatusError"]
    assert len(down.requests) == 2 and len(up.requests) == 2
    assert lab.calls["search:everest"] == 1


async def test_the_joiner_can_have_its_own_model_and_events_name_it() -> None:
    lab = Lab()
    planner_sim = SimulatedLLM([PLAN], latency=FAST)
    joiner_sim = SimulatedLLM([finish("1.5011")], latency=FAST)
    with anyio.fail_after(20):
        async with planner_sim.serve() as p_url, joiner_sim.serve() as j_url:
            async with (
                LLM(p_url, model="small-planner", dialect="vllm") as planner,
                LLM(j_url, model="big-joiner", dialect="vllm") as joiner,
            ):
                orch = Orchestrator(lab.tools, planner, joiner_llm=joiner)
                result = await orch.run("How many times taller is Everest?")
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011"
    assert len(planner_sim.requests) == 1 and len(joiner_sim.requests) == 1
    finished = [(e.purpose, e.model) for e in result.timeline if isinstance(e, LLMCallFinished)]
    assert finished == [("plan", "small-planner"), ("join", "big-joiner")]
    assert planner.usage.requests == 1 and joiner.usage.requests == 1


@pytest.mark.parametrize(
    ("dialect", "form"), [("vllm", "gbnf"), ("openai", "lark"), ("ollama", "json_schema"), ("plain", None)]
)
async def test_a_planning_round_builds_only_the_grammar_form_its_model_reads(
    dialect: str, form: str | None
) -> None:
    one = {"id": 1, "tool": "math", "args": {"expression": "1 / 2"}}
    plan = PLAN if dialect != "ollama" else json.dumps({"tasks": [one]})
    sim = SimulatedLLM([plan], latency=FAST)
    with anyio.fail_after(20):
        async with sim.serve() as url, LLM(url, model="sim", dialect=dialect) as llm:  # type: ignore[arg-type]
            rnd = Planner(llm, Lab().tools).start(PlanContext("q"), Usage())
            async with aclosing(rnd.tasks()) as tasks:
                async for _ in tasks:
                    pass
    forms = {n for n in ("gbnf", "lark", "json_schema") if rnd.grammar and getattr(rnd.grammar, n)}
    assert forms == ({form} if form else set())
    assert rnd.output == ("json" if form == "json_schema" else "text")


def test_a_joiner_model_without_a_planner_model_is_refused() -> None:
    llm = LLM("http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ConfigError, match="joiner_llm needs llm"):
        Orchestrator(Lab().tools, joiner_llm=llm)
