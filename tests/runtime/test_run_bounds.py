"""Every run ends typed and within its bounds, whatever the model, the server or an observer does.

Each test drives a real run over HTTP against SimulatedLLM (uvicorn on loopback) with one fault,
and checks what a user of ``Orchestrator.run`` sees: a ``RunResult`` (never an exception) whose
status and reason say what happened.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
import pytest

from tomasulo.dispatcher import Event
from tomasulo.exceptions import UserError
from tomasulo.executors import LocalExecutor
from tomasulo.planner import LLM, Prices, RetryPolicy, Timeouts, estimate_tokens
from tomasulo.runtime import Budget, Orchestrator, RunFinished
from tomasulo.testing import Latency, RecordedRequest, Reply, SimulatedLLM, count_tokens

from .rtools import Lab

pytestmark = pytest.mark.anyio

PLAN = (
    '1. search(query="everest")\n2. search(query="kilimanjaro")\n'
    '3. math(expression="${1} / ${2}")\n4. join()\n'
)
TASK1_TOKENS = count_tokens(PLAN[: PLAN.index("2. search")])
FAST = Latency(ttft=0.01, tokens_per_second=2000)
QUICK_RETRY = RetryPolicy(attempts=3, initial=0.01, maximum=0.05, total=10, max_retry_after=0.05)
#: ten searches, one a line: long enough to be cut part-way by a budget
LONG_PLAN = "".join(f'{i}. search(query="everest")\n' for i in range(1, 11)) + "11. join()\n"


def finish(answer: str) -> str:
    return json.dumps({"thought": "done", "action": "finish", "answer": answer})


@asynccontextmanager
async def served(sim: SimulatedLLM, dialect: str = "vllm", path: str = "", **kw: Any) -> AsyncIterator[LLM]:
    async with sim.serve() as url:
        kw.setdefault("retry", QUICK_RETRY)
        llm = LLM(url[: -len("/v1")] + path if path else url, model="sim", dialect=dialect, **kw)  # type: ignore[arg-type]
        try:
            yield llm
        finally:
            await llm.aclose()


async def run(sim: SimulatedLLM, dialect: str = "vllm", *, llm_kw: Any = None, **orch_kw: Any) -> Any:
    with anyio.fail_after(30):
        async with served(sim, dialect, **(llm_kw or {})) as llm:
            return await Orchestrator(Lab().tools, llm, **orch_kw).run("How many times taller is Everest?")


# -- the model's output -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["plain", "vllm"])
async def test_a_deeply_nested_plan_ends_the_run_with_a_reason(dialect: str) -> None:
    deep = '1. search(query="everest")\n2. search(query=' + "[" * 3000 + "]" * 3000 + ")\n3. join()\n"
    sim = SimulatedLLM(default=Reply(deep, check_grammar=False), latency=Latency())
    result = await run(sim, dialect, budget=Budget(max_replans=0))
    assert result.status in ("failed", "stopped")
    # the nesting error is the first interrupt; the reason names the last one before the bound
    said = " ".join([result.reason or "", *result.interrupts]).lower()
    assert any(word in said for word in ("nest", "deep", "depth")), (result.reason, result.interrupts)
    assert "RecursionError" not in (result.reason or ""), "the reason names the plan's fault, not a crash"


async def test_a_plan_that_ends_without_join_is_continued() -> None:
    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:  # the model stops after task 2, without join()
            return Reply(PLAN[: PLAN.index("3. math")], check_grammar=False)
        if req.index == 1:
            assert "ended without join() after 2 tasks" in req.prompt
            return '3. math(expression="${1} / ${2}")\n4. join()\n'
        return finish("1.5011")

    result = await run(SimulatedLLM(script, latency=FAST))
    assert result.status == "finished", result.reason
    assert result.results == {1: 8849.0, 2: 5895.0, 3: 1.5011}
    assert "ended without join()" in result.interrupts[0]


async def test_a_plan_that_never_joins_stops_at_the_replan_bound() -> None:
    sim = SimulatedLLM(default=Reply('1. search(query="everest")\n', check_grammar=False), latency=FAST)
    result = await run(sim, budget=Budget(max_replans=0))
    assert result.status == "stopped"
    assert "replan bound reached (0)" in (result.reason or "")
    assert "without join()" in (result.reason or "")


# -- the server's answers -----------------------------------------------------------------------


async def test_an_html_page_instead_of_a_stream_fails_the_run_with_a_reason() -> None:
    sim = SimulatedLLM(default=Reply.raw("<html><body>502 Bad Gateway</body></html>"), latency=FAST)
    result = await run(sim)
    assert result.status == "failed"
    assert "text/html" in (result.reason or "") and "502 Bad Gateway" in (result.reason or "")
    assert result.answer is None


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("<html>busy</html>", "text/html", "not JSON"),
        ("this is not json", "application/json", "not a usable JSON answer"),
        ("[" * 100_000, "application/json", "JSON"),
    ],
)
async def test_a_joiner_answer_that_is_not_json_twice_stops_with_the_best_answer(
    body: str, content_type: str, expected: str
) -> None:
    bad = Reply.raw(body, content_type=content_type)
    sim = SimulatedLLM([PLAN, bad, bad], latency=FAST)
    result = await run(sim)
    assert result.status == "stopped"
    assert expected in (result.reason or "") and "repair round" in (result.reason or ""), result.reason
    assert result.results[3] == 1.5011, "the tasks' outcomes are kept"
    assert result.answer == "1.5011", "the run answers with the last result"
    assert len(sim.requests) == 3, "one repair round, no more"


async def test_a_malformed_event_mid_plan_replans_without_rerunning_tasks() -> None:
    lab = Lab()

    def script(req: RecordedRequest) -> Reply | str:
        if req.index == 0:
            return Reply.bad_event(PLAN, after_tokens=TASK1_TOKENS)
        if req.index == 1:
            assert "malformed event" in req.prompt
            return '2. search(query="kilimanjaro")\n3. math(expression="${1} / ${2}")\n4. join()\n'
        return finish("1.5011")

    sim = SimulatedLLM(script, latency=FAST)
    with anyio.fail_after(30):
        async with served(sim) as llm:
            result = await Orchestrator(lab.tools, llm).run("ratio?")
    assert result.status == "finished", result.reason
    assert lab.calls["search:everest"] == 1


@pytest.mark.parametrize("data", ["{not json", '{"choices": 5}', '{"choices": [{"delta": {"content": 7}}]}'])
async def test_a_malformed_first_event_fails_the_run_with_a_reason(data: str) -> None:
    sim = SimulatedLLM(default=Reply.bad_event(PLAN, after_tokens=0, data=data), latency=FAST)
    result = await run(sim)
    assert result.status == "failed"
    assert "LLMResponseError" in (result.reason or "") and "event" in (result.reason or ""), result.reason


@pytest.mark.parametrize("retry_after", ["soon", "Wed, 21 Oct 2015 07:28:00 GMT", "nan", "-3", "1e999"])
async def test_a_retry_after_that_is_not_a_number_is_retried_with_backoff(retry_after: str) -> None:
    sim = SimulatedLLM([Reply.rate_limited(retry_after=retry_after), PLAN, finish("1.5011")], latency=FAST)
    result = await run(sim)
    assert result.status == "finished", result.reason
    assert [r.status for r in sim.requests] == [429, 200, 200]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply.rate_limited(retry_after=0.01), "429"),
        (Reply.server_error(502), "502"),
        (Reply.disconnect(PLAN, after_tokens=0), "LLMConnectionError"),
    ],
)
async def test_a_server_that_keeps_failing_fails_the_run(reply: Reply, expected: str) -> None:
    sim = SimulatedLLM(default=reply, latency=FAST)
    result = await run(sim)
    assert result.status == "failed"
    assert expected in (result.reason or ""), result.reason
    assert len(sim.requests) == QUICK_RETRY.attempts


async def test_a_base_url_without_v1_fails_with_a_hint() -> None:
    sim = SimulatedLLM(default=PLAN, latency=FAST)
    result = await run(sim, llm_kw={"path": "/"})
    assert result.status == "failed"
    assert "404" in (result.reason or "") and "/v1" in (result.reason or ""), result.reason


# -- observers and internal faults --------------------------------------------------------------


async def test_an_observer_that_raises_neither_stops_nor_changes_the_run() -> None:
    seen: list[Event] = []

    def observer(event: Event) -> None:
        seen.append(event)
        raise RuntimeError(f"observer broke on {type(event).__name__}")

    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    result = await run(sim, on_event=observer)
    assert result.status == "finished", result.reason
    assert result.answer == "1.5011"
    assert [type(e) for e in seen] == [type(e) for e in result.timeline], "every event still reached it"
    assert isinstance(seen[-1], RunFinished) and seen[-1].status == "finished"
    assert result.warnings, "the observer's failures are reported"
    first = result.warnings[0]
    assert "on_event observer" in first and "RuntimeError: observer broke on RunStarted" in first
    assert "more events" in result.warnings[-1]


class _CrashingExecutor(LocalExecutor):
    """Runs every call, then breaks while the run shuts down (an internal fault)."""

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await super().__aexit__(exc_type, exc, tb)
        raise RuntimeError("executor shutdown broke")


async def test_a_run_whose_internals_crash_is_failed_never_finished() -> None:
    events: list[Event] = []
    sim = SimulatedLLM([PLAN, finish("1.5011")], latency=FAST)
    result = await run(sim, executor=_CrashingExecutor(), on_event=events.append)
    assert result.status == "failed"
    assert "internal error: RuntimeError: executor shutdown broke" in (result.reason or "")
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert [e.status for e in finished] == ["failed"]


async def test_run_sync_inside_an_event_loop_says_to_await_run() -> None:
    orch = Orchestrator(Lab().tools)
    with pytest.raises(UserError, match=r"await orchestrator\.run\(query\)"):
        orch.run_sync("q")


# -- bounds during a stream ---------------------------------------------------------------------


async def test_a_cost_budget_cuts_the_plan_stream_within_one_chunk() -> None:
    lab = Lab()
    three = count_tokens(LONG_PLAN[: LONG_PLAN.index("4. search")])
    prices = Prices(prompt=0.0, completion=1_000_000.0)  # one currency unit a completion token
    sim = SimulatedLLM([LONG_PLAN, finish("never asked")], latency=FAST)
    with anyio.fail_after(30):
        async with served(sim, prices=prices) as llm:
            result = await Orchestrator(lab.tools, llm, budget=Budget(max_cost=float(three))).run("q")
    assert result.status == "stopped"
    assert "cost budget reached" in (result.reason or "") and "cut after 3 tasks" in (result.reason or "")
    assert [t.id for t in result.tasks] == [1, 2, 3]
    assert all(t.status == "succeeded" for t in result.tasks), "dispatched tasks keep their outcomes"
    assert result.plans == [LONG_PLAN[: LONG_PLAN.index("4. search")]]
    assert result.usage.cost <= three + 1
    assert len(sim.requests) == 1, "no joiner call once the budget is spent"
    assert "8849" in (result.answer or ""), "the best answer at hand is the last result"


async def test_a_cost_budget_cuts_a_parallel_function_calling_turn_before_its_calls_run() -> None:
    lab = Lab()
    three = count_tokens(LONG_PLAN[: LONG_PLAN.index("4. search")])
    prices = Prices(prompt=0.0, completion=1_000_000.0)
    sim = SimulatedLLM([LONG_PLAN, finish("never asked")], latency=FAST)
    with anyio.fail_after(30):
        async with served(sim, "plain", prices=prices) as llm:  # plan-text turns (native: test_native_turns)
            orch = Orchestrator(lab.tools, llm, mode="parallel_fc", budget=Budget(max_cost=float(three)))
            result = await orch.run("q")
    assert result.status == "stopped"
    assert "cost budget reached" in (result.reason or "") and "turn 1" in (result.reason or "")
    assert result.tasks == [] and sum(lab.calls.values()) == 0, "a turn's calls run only once it is whole"
    assert len(sim.requests) == 1


async def test_a_token_budget_cuts_the_plan_stream_within_one_chunk() -> None:
    probe = SimulatedLLM([LONG_PLAN, finish("x")], latency=FAST)
    await run(probe)
    prompt = estimate_tokens(probe.requests[0].prompt)  # what the client counts before the server says
    bound = prompt + count_tokens(LONG_PLAN[: LONG_PLAN.index("5. search")])
    sim = SimulatedLLM([LONG_PLAN, finish("never asked")], latency=FAST)
    result = await run(sim, budget=Budget(max_tokens=bound))
    assert result.status == "stopped"
    assert "token budget reached" in (result.reason or "") and "streamed" in (result.reason or "")
    assert [t.id for t in result.tasks] == [1, 2, 3, 4]
    assert all(t.status == "succeeded" for t in result.tasks)
    assert bound <= result.usage.total_tokens <= bound + 1
    assert len(sim.requests) == 1


async def test_a_server_that_sends_keep_alive_chunks_cannot_outlast_the_wall_time_budget() -> None:
    sim = SimulatedLLM(default=Reply.keep_alive(PLAN, after_tokens=TASK1_TOKENS, kind="empty"), latency=FAST)
    t0 = anyio.current_time()
    result = await run(sim, budget=Budget(max_seconds=1.0))
    assert anyio.current_time() - t0 < 5
    assert result.status == "stopped" and "wall-time budget of 1 s" in (result.reason or "")


async def test_a_server_that_sends_keep_alive_chunks_hits_the_llm_total_timeout() -> None:
    sim = SimulatedLLM(default=Reply.keep_alive(PLAN, after_tokens=0, kind="empty"), latency=FAST)
    retry = RetryPolicy(attempts=1)
    result = await run(sim, llm_kw={"timeouts": Timeouts(read=0.5, total=1.0), "retry": retry})
    assert result.status == "failed"
    assert "1 s total timeout" in (result.reason or "") and "chunks" in (result.reason or ""), result.reason


async def test_a_budget_reached_by_the_chunk_that_holds_join_lets_the_whole_plan_run() -> None:
    """The last chunk of a plan (the one with ``join()``) crosses max_tokens: the plan is whole,
    so its tasks run to the end (not ``answer_grace``) and the run stops before the joiner."""
    probe = SimulatedLLM([LONG_PLAN, finish("x")], latency=FAST)
    await run(probe)
    prompt = estimate_tokens(probe.requests[0].prompt)
    bound = prompt + count_tokens(LONG_PLAN)  # reached by the plan's last chunk, "()\n"
    lab = Lab(delay=0.2)
    sim = SimulatedLLM([LONG_PLAN, finish("never asked")], latency=FAST)
    with anyio.fail_after(30):
        async with served(sim) as llm:
            # a grace far shorter than the tasks: a cut plan would lose them all
            orch = Orchestrator(lab.tools, llm, budget=Budget(max_tokens=bound, answer_grace=0.01))
            result = await orch.run("How many times taller is Everest?")  # the probe's prompt
    assert result.status == "stopped"
    assert "token budget reached" in (result.reason or "")
    assert "cut after" not in (result.reason or ""), result.reason
    assert [t.id for t in result.tasks] == list(range(1, 11))
    assert all(t.status == "succeeded" for t in result.tasks), [t.status for t in result.tasks]
    assert result.plans == [LONG_PLAN]
    assert len(sim.requests) == 1, "no joiner call once the budget is spent"
    assert "8849" in (result.answer or "")


async def test_a_huge_error_message_from_the_server_gives_a_bounded_reason() -> None:
    sim = SimulatedLLM(default=Reply.server_error(400, "no " * 50_000), latency=FAST)
    result = await run(sim)
    assert result.status == "failed"
    assert "LLMStatusError" in (result.reason or "") and "400" in (result.reason or ""), result.reason[:200]
    assert len(result.reason or "") < 1000, f"a reason of {len(result.reason or '')} characters"
