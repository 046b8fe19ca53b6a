"""End-to-end runs against a real llama.cpp engine: llama-cpp-python's OpenAI-compatible server
with a tiny random-weight model (see ``conftest.py``), over the ``llamacpp`` dialect.

A random model writes nonsense, so these tests assert behaviour, not answers: every run ends
within its bounds (answered, or ``stopped`` with a reason), every plan the engine streamed is
valid under the grammar that was sent (whole, or a prefix when cut off at ``max_tokens``), every
joiner reply is a decision (the server honours the schema) or is repaired, and tasks start
while their plan still streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest
from pydantic import BaseModel, Field

from tomasulo.dispatcher import TaskStarted
from tomasulo.exceptions import LLMError, LLMResponseError, LLMTruncated
from tomasulo.planner import LLM, GrammarSpec, Message, RetryPolicy, Timeouts, parse_decision
from tomasulo.runtime import Budget, Orchestrator, PlanFinished, PlanStarted, RunResult
from tomasulo.testing._constraint import GrammarConstraint
from tomasulo.tools import Toolset, tool

from .conftest import LlamaServer, requires_server

pytestmark = [pytest.mark.anyio, pytest.mark.llamacpp, requires_server]

RUNS = 6
MAX_TASKS = 3
BUDGET = Budget(max_replans=2, max_seconds=90, answer_grace=10)
TIMEOUTS = Timeouts(connect=5, read=30, total=60)
NO_RETRY = RetryPolicy(attempts=1)


@tool
async def search(query: str) -> str:
    """Look a query up; returns what was found."""
    return f"{len(query)} results for {query[:30]!r}"


@tool
def lookup(key: str) -> str:
    """Look a key up in the table; odd-length keys are missing (the call fails)."""
    if len(key) % 2:
        raise KeyError(f"no entry {key!r}")
    return key.upper()


TOOLS = Toolset([search, lookup])


class Recording(LLM):
    """An LLM that keeps what the engine sent: each plan stream with its grammar, each reply."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plans: list[tuple[str, GrammarSpec | None, BaseException | None]] = []
        self.replies: list[str] = []

    async def stream(  # type: ignore[override]
        self, messages: str | Sequence[Message], **kwargs: Any
    ) -> AsyncGenerator[str, None]:
        parts: list[str] = []
        error: BaseException | None = None
        try:
            async with aclosing(super().stream(messages, **kwargs)) as chunks:
                async for piece in chunks:
                    parts.append(piece)
                    yield piece
        except BaseException as e:
            error = e
            raise
        finally:
            self.plans.append(("".join(parts), kwargs.get("grammar"), error))

    async def complete(self, messages: str | Sequence[Message], **kwargs: Any) -> str:
        try:
            text = await super().complete(messages, **kwargs)
        except LLMResponseError as e:
            self.replies.append(e.partial)
            raise
        self.replies.append(text)
        return text


def llm_for(server: LlamaServer, seed: int) -> Recording:
    return Recording(
        server.base_url,
        model="tiny",
        dialect="llamacpp",
        seed=seed,
        temperature=1.0,
        retry=NO_RETRY,
        timeouts=TIMEOUTS,
    )


def streamed_while_planning(result: RunResult) -> bool:
    """Whether some task started before the plan that held it had finished streaming."""
    open_plan: int | None = None
    for event in result.timeline:
        if isinstance(event, PlanStarted):
            open_plan = event.plan
        elif isinstance(event, PlanFinished):
            open_plan = None
        elif isinstance(event, TaskStarted) and open_plan is not None:
            return True
    return False


async def test_runs_over_llama_cpp_python_end_within_bounds_with_valid_plans(
    llama_cpp_python: LlamaServer,
) -> None:
    results: list[RunResult] = []
    llms: list[Recording] = []
    t0 = time.monotonic()
    with anyio.fail_after(RUNS * 100):
        for seed in range(RUNS):
            llm = llm_for(llama_cpp_python, seed)
            async with llm:
                orch = Orchestrator(TOOLS, llm, max_tasks=MAX_TASKS, budget=BUDGET)
                results.append(await orch.run(f"Question {seed}: what does the table hold for 'ab'?"))
            llms.append(llm)
    elapsed = time.monotonic() - t0
    for result, llm in zip(results, llms, strict=True):
        where = f"run {result.run_id}: {result.status} ({result.reason}); plans {result.plans}"
        # ends within its bounds, with a reason when it did not answer
        assert result.status in ("finished", "stopped"), where
        assert result.status == "finished" or result.reason, where
        assert result.makespan < BUDGET.max_seconds, where  # type: ignore[operator]
        assert result.replans <= BUDGET.max_replans, where
        # every plan the engine streamed is valid under the grammar sent with it
        assert llm.plans, where
        for text, spec, error in llm.plans:
            assert spec is not None and spec.gbnf is not None, "the llamacpp dialect sends GBNF"
            constraint = GrammarConstraint("gbnf", spec.gbnf, field="grammar")
            cut = isinstance(error, LLMTruncated)
            assert error is None or isinstance(error, LLMError), (where, error)
            assert constraint.check(text, prefix=cut or error is not None) is None, (where, text)
        # every joiner reply is a decision: the server honoured the schema in response_format
        for reply in llm.replies:
            parse_decision(reply)
        assert all(t.status in ("succeeded", "failed", "skipped", "cancelled") for t in result.tasks)
    assert any(r.status == "finished" and r.answer is not None for r in results), [
        (r.status, r.reason) for r in results
    ]
    assert any(streamed_while_planning(r) for r in results), "no task started while its plan streamed"
    print(f"\n{RUNS} runs over llama-cpp-python in {elapsed:.1f} s:", [r.status for r in results])


async def test_a_plan_cut_off_at_max_tokens_is_read_as_truncated(llama_cpp_python: LlamaServer) -> None:
    from tomasulo.grammar import build_grammar

    g = build_grammar(TOOLS, max_tasks=MAX_TASKS)
    spec = GrammarSpec(gbnf=g.gbnf())
    async with llm_for(llama_cpp_python, seed=3) as llm:
        with anyio.fail_after(60), pytest.raises(LLMTruncated) as caught:
            async with aclosing(llm.stream("Write a plan.", grammar=spec, max_tokens=5)) as chunks:
                async for _ in chunks:
                    pass
    assert caught.value.max_tokens == 5 and caught.value.partial
    assert (
        GrammarConstraint("gbnf", g.gbnf(), field="grammar").check(caught.value.partial, prefix=True) is None
    )


async def test_the_server_refuses_the_json_schema_form_it_does_not_read(
    llama_cpp_python: LlamaServer,
) -> None:
    """Why the llamacpp dialect sends ``{"type": "json_object", "schema": ...}``: this server
    fails a request with the OpenAI ``json_schema`` form outright (its request model knows only
    ``text`` and ``json_object``), and has no top-level ``json_schema`` field at all."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 8,
        "seed": 1,
    }
    openai_form = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    async with httpx.AsyncClient(base_url=llama_cpp_python.base_url, timeout=60) as http:
        refused = await http.post("/chat/completions", json={**body, "response_format": openai_form})
        honoured = await http.post(
            "/chat/completions",
            json={**body, "max_tokens": 40, "response_format": {"type": "json_object", "schema": schema}},
        )
    assert refused.status_code >= 400
    assert honoured.status_code == 200
    text = honoured.json()["choices"][0]["message"]["content"]
    assert text.startswith('{"a"') or text.startswith("{ ") or text.startswith("{\n"), text


#: a grammar the model can never finish ("\x01" is not in the vocabulary): it writes until
#: max_tokens, as a plan nobody reads any more would
ENDLESS = GrammarSpec(gbnf='root ::= [a-z ]+ "\\x01"')


async def first_piece_after(llm: LLM, t0: float) -> float:
    async with aclosing(llm.stream("again", grammar=ENDLESS, max_tokens=4)) as chunks:
        async for _ in chunks:
            return time.monotonic() - t0
    raise AssertionError("no text")


async def test_a_closed_stream_stops_the_server_so_the_next_request_does_not_queue(
    llama_cpp_python: LlamaServer,
) -> None:
    """Preemption closes the stream; llama-cpp-python notices within a chunk and frees the model
    (its one lock), so the replan's first token comes about as fast as on an idle server
    instead of after the abandoned generation's remaining thousands of tokens."""
    async with llm_for(llama_cpp_python, seed=5) as llm:
        with anyio.fail_after(120):
            idle = min([await first_piece_after(llm, time.monotonic()) for _ in range(3)])
            t0 = time.monotonic()
            pieces = 0
            async with aclosing(llm.stream("write", grammar=ENDLESS, max_tokens=3000)) as chunks:
                async for _ in chunks:
                    pieces += 1
                    if pieces == 20:
                        break  # what a preempted plan does: close it
            rate = pieces / (time.monotonic() - t0)
            after = await first_piece_after(llm, time.monotonic())
    left = (3000 - pieces) / rate  # what the abandoned generation would still have taken
    print(
        f"\nfirst token: idle {idle * 1000:.0f} ms, after a preemption {after * 1000:.0f} ms "
        f"(the abandoned stream had about {left:.1f} s to go at {rate:.0f} tokens/s)"
    )
    assert after < max(10 * idle, 1.0)
    assert after < left / 5


class Found(BaseModel):
    """A typed answer for the random model to fill in."""

    key: str = Field(max_length=20)
    hits: int = Field(ge=0, le=99)


async def test_a_typed_answer_over_llama_cpp_python_validates_or_the_run_ends_cleanly(
    llama_cpp_python: LlamaServer,
) -> None:
    """``output_type`` on the real engine: the schema goes in ``response_format``; every run
    either has a ``Found`` as its output (the engine held the reply to the typed schema) or
    ends ``stopped``/``failed`` with a reason, its tasks kept."""
    results: list[RunResult] = []
    seen: list[str] = []
    with anyio.fail_after(3 * 100):
        for seed in range(3):
            llm = llm_for(llama_cpp_python, 100 + seed)
            async with llm:
                orch = Orchestrator(TOOLS, llm, max_tasks=MAX_TASKS, budget=BUDGET, output_type=Found)
                results.append(await orch.run(f"Question {seed}: how many hits for 'ab'?"))
            for reply in llm.replies:  # what the engine wrote under the typed schema
                decision = parse_decision(reply)
                if decision.action == "finish":
                    # the engine holds the answer's shape; llama-cpp-python's schema grammar
                    # leaves out some bounds (`maximum`), which validation and the repair catch
                    answer = json.loads(reply, strict=False)["answer"]
                    assert set(answer) == {"key", "hits"}, reply
                    assert isinstance(answer["key"], str) and isinstance(answer["hits"], int), reply
                    seen.append(reply)
    for result in results:
        where = f"run {result.run_id}: {result.status} ({result.reason})"
        if result.status == "finished":
            assert isinstance(result.output, Found), where
        else:
            assert result.status in ("stopped", "failed") and result.reason, where
            assert result.output is None or isinstance(result.output, Found), where
    print("\ntyped answers over llama-cpp-python:", [(r.status, r.output) for r in results])
    print("finish replies:", seen)
