"""Answer templates end to end, and the joiner's answer streamed as ``AnswerDelta`` events.

A plan that ends with ``join("... ${k} ...")`` is answered with it once the tasks it names have
succeeded, with no joiner call; otherwise the joiner runs as it always did.
"""

from __future__ import annotations

import json

import anyio
import pytest

from tomasulo.dispatcher import Event
from tomasulo.exceptions import ConfigError
from tomasulo.runtime import (
    AnswerDelta,
    JoinerDecided,
    LLMCallFinished,
    LLMCallStarted,
    Orchestrator,
    RunFinished,
    RunResult,
)
from tomasulo.testing import Disconnect, Latency, RecordedRequest, Reply, SimulatedLLM

from .rtools import Lab
from .test_orchestrator import FAST, continued_from, finish, served

pytestmark = pytest.mark.anyio

TEMPLATE_PLAN = (
    '1. search(query="everest")\n'
    '2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n'
    '4. join("Everest is ${3} times as tall as Kilimanjaro (${1} m)")\n'
)
RENDERED = "Everest is 1.5011 times as tall as Kilimanjaro (8849 m)"
QUESTION = "How many times taller is Everest?"


async def run(sim: SimulatedLLM, lab: Lab, **orch_kw: object) -> tuple[RunResult, list[Event]]:
    """Run QUESTION, reading the events live (so deltas are made); returns the result and them."""
    seen: list[Event] = []
    with anyio.fail_after(20):
        async with served(sim) as llm, Orchestrator(lab.tools, llm, **orch_kw) as orch:  # type: ignore[arg-type]
            handle = orch.start(QUESTION)
            async for event in handle.events():
                seen.append(event)
            result = await handle.result()
    return result, seen


def purposes(events: list[Event]) -> list[str]:
    return [e.purpose for e in events if isinstance(e, LLMCallStarted)]


async def test_template_answers_without_a_joiner_call() -> None:
    lab = Lab()
    sim = SimulatedLLM([TEMPLATE_PLAN], latency=FAST)  # a joiner request would find no reply
    result, events = await run(sim, lab)
    assert result.status == "finished", result.reason
    assert result.answer == RENDERED
    assert result.answered_by == "template"
    assert result.llm_calls == 1 and purposes(events) == ["plan"] and len(sim.requests) == 1
    assert not any(isinstance(e, JoinerDecided) for e in events)
    deltas = [e for e in events if isinstance(e, AnswerDelta)]
    assert [(d.text, d.source) for d in deltas] == [(RENDERED, "template")]
    end = events[-1]
    assert isinstance(end, RunFinished) and end.answered_by == "template"
    assert RunResult.from_events(events).answered_by == "template"
    assert json.loads(json.dumps(deltas[0].to_json()))["kind"] == "answer_delta"
    assert Event.from_json(deltas[0].to_json()) == deltas[0]


async def test_a_failed_referenced_task_replans_and_the_joiner_answers() -> None:
    lab = Lab()
    lab.broken.add("kilimanjaro")

    def script(req: RecordedRequest) -> str:
        if req.index == 0:
            return TEMPLATE_PLAN
        if "You are the joiner" in req.prompt:
            return finish("Denali instead")
        n = continued_from(req.prompt)  # where the failure cut the plan decides the numbering
        return f'{n}. search(query="denali")\n{n + 1}. join()\n'

    sim = SimulatedLLM(script, latency=FAST)
    result, events = await run(sim, lab)
    assert result.status == "finished", result.reason
    assert result.answer == "Denali instead" and result.answered_by == "joiner"
    assert purposes(events) == ["plan", "plan", "join"]


async def test_a_template_whose_path_is_missing_leaves_the_answer_to_the_joiner() -> None:
    lab = Lab()
    plan = '1. search(query="everest")\n2. join("height: ${1.metres}")\n'
    sim = SimulatedLLM([plan, finish("8849 m")], latency=FAST)
    result, events = await run(sim, lab)
    assert result.answer == "8849 m" and result.answered_by == "joiner"
    assert purposes(events) == ["plan", "join"]
    assert "proposed answer" not in sim.requests[1].prompt  # nothing could be rendered


async def test_joiner_always_asks_the_joiner_with_the_proposed_answer() -> None:
    lab = Lab()
    sim = SimulatedLLM([TEMPLATE_PLAN, finish("about 1.5 times")], latency=FAST)
    result, events = await run(sim, lab, joiner="always")
    assert result.answer == "about 1.5 times" and result.answered_by == "joiner"
    assert purposes(events) == ["plan", "join"]
    prompt = sim.requests[1].prompt
    assert "proposed answer" in prompt and RENDERED in prompt


async def test_a_plain_join_still_asks_the_joiner() -> None:
    lab = Lab()
    plan = TEMPLATE_PLAN.replace(TEMPLATE_PLAN.splitlines()[-1], "4. join()")
    sim = SimulatedLLM([plan, finish("1.5 times")], latency=FAST)
    result, events = await run(sim, lab)
    assert result.answer == "1.5 times" and result.answered_by == "joiner"
    assert purposes(events) == ["plan", "join"]


def test_joiner_mode_is_checked() -> None:
    with pytest.raises(ConfigError, match="joiner must be one of 'auto', 'always'"):
        Orchestrator(Lab().tools, joiner="never")  # type: ignore[arg-type]


async def test_a_fixed_plan_answers_with_its_template() -> None:
    lab = Lab()
    with anyio.fail_after(10):
        result = await Orchestrator(lab.tools).execute_plan(TEMPLATE_PLAN)
    assert result.answer == RENDERED and result.answered_by == "template"
    plain = await Orchestrator(lab.tools).execute_plan('1. search(query="denali")\n2. join()')
    assert plain.answer == "6190.0" and plain.answered_by == "last_result"


# -- the joiner's answer, streamed ----------------------------------------------------------------

LONG_ANSWER = "Everest, at 8849 metres, is about one and a half times as tall as Kilimanjaro. " * 4
JOIN_PLAN = TEMPLATE_PLAN.replace(TEMPLATE_PLAN.splitlines()[-1], "4. join()")


async def test_the_first_answer_words_arrive_before_the_joiner_call_ends() -> None:
    lab = Lab()
    # 100 tokens/s: the answer's ~90 tokens take most of a second after its first words
    sim = SimulatedLLM([JOIN_PLAN, finish(LONG_ANSWER)], latency=Latency(ttft=0.01, tokens_per_second=100))
    result, events = await run(sim, lab)
    assert result.answer == LONG_ANSWER
    deltas = [e for e in events if isinstance(e, AnswerDelta)]
    join_end = next(e for e in events if isinstance(e, LLMCallFinished) and e.purpose == "join")
    assert deltas and all(d.source == "joiner" for d in deltas)
    assert "".join(d.text for d in deltas) == LONG_ANSWER
    assert deltas[0].seq < join_end.seq  # seen while the call still streamed
    assert deltas[0].text != LONG_ANSWER and len(deltas) > 1  # in pieces, not all at the end
    assert sim.requests[1].stream


async def test_nobody_listening_makes_no_deltas_and_no_stream() -> None:
    lab = Lab()
    sim = SimulatedLLM([JOIN_PLAN, finish("1.5 times")], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run(QUESTION)
    assert result.answer == "1.5 times"
    assert not any(isinstance(e, AnswerDelta) for e in result.timeline)
    assert not sim.requests[1].stream


async def test_a_joiner_stream_that_breaks_off_is_asked_again_whole() -> None:
    lab = Lab()
    broken = Reply(finish(LONG_ANSWER), fault=Disconnect(after_tokens=30))
    sim = SimulatedLLM([JOIN_PLAN, broken, finish("1.5 times")], latency=FAST)
    result, _ = await run(sim, lab)
    assert result.status == "finished", result.reason
    assert result.answer == "1.5 times"
    assert [r.stream for r in sim.requests[1:]] == [True, False]


async def test_a_json_plan_answers_with_its_template() -> None:
    lab = Lab()
    plan = json.dumps(
        {
            "tasks": [
                {"id": 1, "tool": "search", "args": {"query": "everest"}},
                {"id": 2, "tool": "search", "args": {"query": "kilimanjaro"}},
                {"id": 3, "tool": "math", "args": {"expression": "${1} / ${2}"}},
            ],
            "answer": "Everest is ${3} times as tall as Kilimanjaro (${1} m)",
        }
    )
    sim = SimulatedLLM([plan], latency=FAST)
    with anyio.fail_after(20):
        async with served(sim, "ollama") as llm:
            result = await Orchestrator(lab.tools, llm).run(QUESTION)
    assert result.status == "finished", result.reason
    assert result.answer == RENDERED and result.answered_by == "template" and result.llm_calls == 1
