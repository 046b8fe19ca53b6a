"""Structured answers (``output_type=``), joiner instructions and multi-turn conversations.

Each test drives a real run over HTTP against SimulatedLLM (uvicorn on loopback), which reads
the joiner's schema from the field its server profile reads, holds scripted replies to it and
samples from it, as a constrained server does.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, Field

from tomasulo.exceptions import ConfigError
from tomasulo.planner import Joiner, OutputSpec, Turn, Usage
from tomasulo.runtime import Orchestrator, RunResult
from tomasulo.testing import Reply, SimulatedLLM

from .rtools import Lab
from .test_engine_behaviour import FAST, PLAN, QUESTION, finish, served

pytestmark = pytest.mark.anyio


class Ratio(BaseModel):
    """How many times taller the first mountain is."""

    ratio: float = Field(description="the quotient of the two heights")
    taller: str
    rank: int = Field(ge=1, le=3)


GOOD = {"ratio": 1.5011, "taller": "Everest", "rank": 1}


def finish_with(answer: Any) -> str:
    return json.dumps({"thought": "both heights are known", "action": "finish", "answer": answer})


async def run(
    sim: SimulatedLLM, dialect: str = "vllm", query: str = QUESTION, orch_kw: Any = None, **run_kw: Any
) -> RunResult:
    with anyio.fail_after(30):
        async with served(sim, dialect) as llm:
            return await Orchestrator(Lab().tools, llm, **(orch_kw or {})).run(query, **run_kw)


def joiner_schema_sent(body: dict[str, Any]) -> dict[str, Any]:
    if "structured_outputs" in body:
        return body["structured_outputs"]["json"]  # type: ignore[no-any-return]
    fmt = body["response_format"]
    return fmt["schema"] if fmt["type"] == "json_object" else fmt["json_schema"]["schema"]  # type: ignore[no-any-return]


# -- output_type ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp", "sglang", "openai"])
async def test_the_answer_is_the_model_instance_and_its_schema_goes_where_the_server_reads_it(
    dialect: str,
) -> None:
    sim = SimulatedLLM([PLAN, finish_with(GOOD)], latency=FAST)
    result = await run(sim, dialect, output_type=Ratio)
    assert result.status == "finished", result.reason
    assert result.output == Ratio(**GOOD)
    assert json.loads(result.answer or "") == GOOD
    schema = joiner_schema_sent(sim.requests[1].body)
    answer = schema["oneOf"][0]["properties"]["answer"]
    assert answer["properties"]["rank"] == {"maximum": 3, "minimum": 1, "title": "Rank", "type": "integer"}
    assert "quotient" in sim.requests[1].body["messages"][0]["content"]  # the prompt shows it too


async def test_the_simulated_server_holds_a_reply_to_the_typed_schema() -> None:
    """A scripted reply whose answer does not fit is refused by the server (as a constrained
    engine could never emit it): the schema really is the one enforced."""
    sim = SimulatedLLM([PLAN, finish_with({"ratio": "high"})], latency=FAST)
    result = await run(sim, output_type=Ratio)
    assert result.status == "failed"
    assert sim.requests[1].grammar_field == "structured_outputs.json"
    assert "does not match the grammar in 'structured_outputs.json'" in (result.reason or ""), result.reason


@pytest.mark.parametrize("seed", range(6))
async def test_answers_sampled_under_the_typed_schema_validate(seed: int) -> None:
    """The simulated server samples the joiner's reply from the schema sent: every finished run's
    output is a valid instance, and every run ends cleanly within its bounds."""
    sim = SimulatedLLM([PLAN], default=Reply.sampled(max_bytes=600), latency=FAST, seed=seed)
    result = await run(
        sim, output_type={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    )
    assert result.status in ("finished", "stopped", "failed"), result.reason
    if result.status == "finished":
        assert isinstance(result.output, dict) and isinstance(result.output["n"], int)
    else:
        assert result.reason


class Survey(BaseModel):
    """A nested model: its schema has ``$defs``, which must stay reachable from the root."""

    best: Ratio
    others: list[Ratio] = []


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp"])
async def test_a_nested_model_keeps_its_definitions_reachable(dialect: str) -> None:
    """The server compiles the schema (a dangling ``$ref`` would be a 400) and holds the reply
    to it."""
    answer = {"best": GOOD, "others": [GOOD]}
    sim = SimulatedLLM([PLAN, finish_with(answer)], latency=FAST)
    result = await run(sim, dialect, output_type=Survey)
    assert result.output == Survey(best=Ratio(**GOOD), others=[Ratio(**GOOD)]), result.reason
    assert "Ratio" in joiner_schema_sent(sim.requests[1].body)["$defs"]


@pytest.mark.parametrize("dialect", ["vllm", "llamacpp"])
async def test_the_final_answers_finish_only_schema_keeps_the_type_and_its_definitions(dialect: str) -> None:
    """The joiner's final answer (after the tools' deadline) is asked for under the finish
    branch alone; a replan there holds no typed answer, so it counts as unreadable."""
    replan = json.dumps({"thought": "t", "action": "replan", "feedback": "more"})
    answer = {"best": GOOD, "others": []}
    sim = SimulatedLLM([Reply(replan, check_grammar=False), finish_with(answer)], latency=FAST)
    with anyio.fail_after(30):
        async with served(sim, dialect) as llm:
            decision = await Joiner(llm).decide(
                QUESTION, PLAN, [], Usage(), force_finish=True, output=OutputSpec.of(Survey)
            )
    assert decision.output == Survey(best=Ratio(**GOOD)) and not decision.forced
    schema = joiner_schema_sent(sim.requests[0].body)
    assert "oneOf" not in schema and "Ratio" in schema["$defs"]
    assert schema["properties"]["answer"]["properties"]["best"] == {"$ref": "#/$defs/Ratio"}
    assert "typed answer was due" in sim.requests[1].body["messages"][-1]["content"]


async def test_an_answer_that_does_not_fit_gets_one_repair_round_naming_the_problem() -> None:
    bad = Reply(finish_with({"ratio": "high", "taller": "Everest", "rank": 7}), check_grammar=False)
    sim = SimulatedLLM([PLAN, bad, finish_with(GOOD)], latency=FAST)
    result = await run(sim, output_type=Ratio)
    assert result.status == "finished", result.reason
    assert result.output == Ratio(**GOOD)
    repair = sim.requests[2].body["messages"][-1]["content"]
    assert "Ratio" in repair and "ratio" in repair and "rank" in repair


async def test_no_fitting_answer_after_the_repair_fails_the_run_and_keeps_the_tasks() -> None:
    bad = Reply(finish_with("1.5 times"), check_grammar=False)
    sim = SimulatedLLM([PLAN, bad, bad], latency=FAST)
    result = await run(sim, output_type=Ratio)
    assert result.status == "failed"
    assert "Ratio" in (result.reason or "") and "repair round" in (result.reason or "")
    assert result.output is None
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert result.answer == "1.5011"  # the best answer at hand, as text


async def test_an_answer_written_as_a_string_holding_json_is_read() -> None:
    reply = Reply(finish_with(json.dumps(GOOD)), check_grammar=False)  # a server that ignored the schema
    sim = SimulatedLLM([PLAN, reply], latency=FAST)
    result = await run(sim, output_type=Ratio)
    assert result.status == "finished", result.reason
    assert result.output == Ratio(**GOOD)


async def test_a_json_schema_output_type_gives_the_value_and_a_run_may_replace_the_orchestrators() -> None:
    schema = {"type": "object", "properties": {"feet": {"type": "number"}}, "required": ["feet"]}
    sim = SimulatedLLM([PLAN, finish_with({"feet": 29032})], latency=FAST)
    result = await run(sim, orch_kw={"output_type": Ratio}, output_type=schema)
    assert result.status == "finished", result.reason
    assert result.output == {"feet": 29032}
    assert "feet" in json.dumps(joiner_schema_sent(sim.requests[1].body))


async def test_the_journal_keeps_the_outputs_json_form() -> None:
    sim = SimulatedLLM([PLAN, finish_with(GOOD)], latency=FAST)
    result = await run(sim, output_type=Ratio)
    again = RunResult.from_events(json_round_trip(result))
    assert again.output == GOOD and again.answer == result.answer


def json_round_trip(result: RunResult) -> list[Any]:
    from tomasulo.dispatcher import Event

    return [Event.from_json(json.loads(json.dumps(e.to_json()))) for e in result.timeline]


@pytest.mark.parametrize("bad", [42, {"type": "no-such-type"}, "not a type"])
async def test_an_output_type_that_is_neither_a_type_nor_a_schema_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="output_type"):
        Orchestrator(Lab().tools, output_type=bad)


# -- joiner instructions -------------------------------------------------------------------------


async def test_joiner_instructions_reach_the_joiner_prompt_only() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5")], latency=FAST)
    result = await run(
        sim,
        orch_kw={"joiner_instructions": "Answer in French."},
        joiner_instructions="Round to one decimal.",
    )
    assert result.status == "finished", result.reason
    planner_system = sim.requests[0].body["messages"][0]["content"]
    joiner_system = sim.requests[1].body["messages"][0]["content"]
    assert "Answer in French.\n\nRound to one decimal." in joiner_system
    assert "French" not in planner_system


# -- multi-turn conversations --------------------------------------------------------------------


async def test_a_run_continues_a_conversation_from_the_previous_result() -> None:
    sim = SimulatedLLM([PLAN, finish("1.5 times"), PLAN, finish("about 3,000 m")], latency=FAST)
    with anyio.fail_after(30):
        async with served(sim) as llm:
            orch = Orchestrator(Lab().tools, llm)
            first = await orch.run(QUESTION)
            second = await orch.run("And how much higher in metres?", message_history=first)
    assert second.status == "finished", second.reason
    for request in sim.requests[2:]:  # the second run's planner and joiner both see it
        user = request.body["messages"][-1]["content"]
        assert user.index("Conversation so far") < user.index(QUESTION) < user.index("1.5 times")
        assert user.index("1.5 times") < user.index("Question: And how much higher")
    for request in sim.requests[:2]:
        assert "Conversation so far" not in request.body["messages"][-1]["content"]
    assert second.history == (Turn(QUESTION, "1.5 times"),)
    assert [t.answer for t in second.messages] == ["1.5 times", "about 3,000 m"]
    assert RunResult.from_events(json_round_trip(second)).history == second.history


@pytest.mark.parametrize(
    "history",
    [
        [("Capital of France?", "Paris")],
        [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}],
        [Turn("Capital of France?", "Paris")],
    ],
)
async def test_history_as_pairs_chat_messages_or_turns(history: Any) -> None:
    sim = SimulatedLLM([PLAN, finish("Berlin")], latency=FAST)
    result = await run(sim, query="And of Germany?", message_history=history)
    assert result.status == "finished", result.reason
    user = sim.requests[0].body["messages"][-1]["content"]
    assert "User: Capital of France?\nAssistant: Paris" in user
    assert result.messages == (Turn("Capital of France?", "Paris"), Turn("And of Germany?", "Berlin"))


@pytest.mark.parametrize("bad", ["just text", [("only a question",)], [{"role": "user", "content": 3}]])
async def test_a_history_of_another_shape_is_a_config_error_before_anything_runs(bad: Any) -> None:
    sim = SimulatedLLM([PLAN, finish("x")], latency=FAST)
    with pytest.raises(ConfigError, match="message_history"):
        await run(sim, message_history=bad)
    assert sim.requests == []
