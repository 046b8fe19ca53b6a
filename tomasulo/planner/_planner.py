"""The planner (streams a plan from the LLM, task by task) and the joiner (finish or replan)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

import anyio

from .._logging import get_logger
from ..exceptions import LLMResponseError, PlanError
from ..grammar import JsonPlanStream, Plan, PlanStream, Task, build_grammar
from ..tools import Toolset
from ._dialects import GrammarSpec
from ._llm import LLM
from ._prompts import PlanContext, TaskReport, joiner_messages, planner_messages
from ._usage import Usage

__all__ = ["JoinDecision", "Joiner", "PlanRound", "Planner", "parse_decision"]

log = get_logger("tomasulo.planner")


class PlanRound:
    """One planning call: iterate :meth:`tasks` to get each task as soon as it is parsed.

    ``text`` is what the model wrote so far, ``plan`` the tasks parsed from it. If the stream is
    cut (preempted, disconnected), both hold what arrived, so a replan can continue from there.
    """

    def __init__(
        self,
        planner: Planner,
        ctx: PlanContext,
        usage: Usage,
        watch: Callable[[Usage], None] | None = None,
    ) -> None:
        self.planner = planner
        self.ctx = ctx
        self.usage = usage
        self.watch = watch
        self.grammar: GrammarSpec | None = None
        self.compat = planner.llm.dialect == "plain"
        self.output: Literal["text", "json"] = "text"
        self._parser: PlanStream | JsonPlanStream = self._make_parser()
        self._chunks: list[str] = []
        #: Called with each piece of the model's text as it arrives, before it is parsed (the
        #: run times the first one and passes the text on as ``PlanDelta`` events).
        self.on_text: Callable[[str], None] | None = None

    def _make_parser(self) -> PlanStream | JsonPlanStream:
        ctx, tools = self.ctx, self.planner.tools
        if self.output == "text":
            return PlanStream(tools, compat=self.compat, start_id=ctx.start_id, max_tasks=ctx.max_tasks)
        return JsonPlanStream(tools, start_id=ctx.start_id, max_tasks=ctx.max_tasks)

    async def _prepare(self) -> None:
        """Build the grammar (off the event loop: a first build takes milliseconds) and the parser."""
        planner, ctx = self.planner, self.ctx
        if planner.use_grammar and not self.compat:

            def build() -> GrammarSpec:
                g = build_grammar(planner.tools, max_tasks=ctx.max_tasks, start_id=ctx.start_id)
                return GrammarSpec(gbnf=g.gbnf(), lark=g.lark(), json_schema=g.json_schema())

            self.grammar = await anyio.to_thread.run_sync(build)
        self.output = planner.llm.output_format(self.grammar)
        self._parser = self._make_parser()

    @property
    def text(self) -> str:
        """The model's output so far."""
        return "".join(self._chunks)

    @property
    def plan(self) -> Plan:
        """The tasks parsed so far (and the join, once read)."""
        return self._parser.plan

    @property
    def joined(self) -> bool:
        """Whether the plan was closed with join()."""
        return self._parser.joined

    @property
    def next_id(self) -> int:
        """The id a continuation of this plan starts at: after its join() (ids are never reused)."""
        plan = self._parser.plan
        if plan.join_id is not None:
            return plan.join_id + 1
        return self.ctx.start_id + len(plan.tasks)

    def plan_text(self) -> str:
        """The plan so far in the text dialect (for the next prompt), whatever dialect it came in."""
        return self.plan.to_text()

    async def tasks(self) -> AsyncIterator[Task]:
        """Stream the plan; yields each task the moment its line (or JSON object) is complete.

        Raises:
            PlanError: the model wrote an invalid plan (only possible without a grammar, or when
                a server ignores it); tasks before the error were already yielded.
            LLMError: the server failed; ``partial`` holds the text received.
                :class:`~tomasulo.exceptions.LLMResponseError` (with no ``partial``) also when
                the parser could not read the model's text at all (say, nesting deeper than
                Python can parse): a fault of the answer, never a crash of the caller.
            BudgetExceeded: ``watch`` (see :meth:`LLM.stream`) cut the stream.
        """
        await self._prepare()
        messages = planner_messages(self.planner.tools, self.ctx, output=self.output)
        llm = self.planner.llm
        stream = llm.stream(messages, grammar=self.grammar, usage=self.usage, watch=self.watch)
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                self._chunks.append(chunk)
                if self.on_text is not None:
                    self.on_text(chunk)
                for task in self._read(self._parser.feed, chunk):
                    yield task
                if self._parser.joined and self.compat:
                    # without a grammar the model may ramble on: stop paying for tokens. With one,
                    # the server stops right after join() and sends its usage report, so read on.
                    break
        for task in self._read(lambda _: self._parser.close(), ""):
            yield task

    def _read(self, step: Callable[[str], list[Task]], chunk: str) -> list[Task]:
        """One parser step; a crash inside the parser on the model's text becomes an LLM error."""
        try:
            return step(chunk)
        except PlanError:
            raise
        except RecursionError:
            raise LLMResponseError(
                f"the model's plan nests too deeply to be read (at about character "
                f"{sum(map(len, self._chunks))}); nothing after its last complete task ran"
            ) from None
        except Exception as exc:
            raise LLMResponseError(
                f"the model's plan could not be read ({type(exc).__name__}: {exc}); nothing "
                "after its last complete task ran"
            ) from exc


class Planner:
    """Asks the LLM for plans under the toolset's grammar.

    Args:
        llm: the model.
        tools: what plans may call.
        use_grammar: send the plan grammar to servers that take one (``plain`` never does).
    """

    def __init__(self, llm: LLM, tools: Toolset, *, use_grammar: bool = True) -> None:
        self.llm = llm
        self.tools = tools
        self.use_grammar = use_grammar

    def start(
        self, ctx: PlanContext, usage: Usage, *, watch: Callable[[Usage], None] | None = None
    ) -> PlanRound:
        """A planning call for ``ctx``; iterate ``round.tasks()`` to run it.

        ``watch`` sees the usage after each chunk and may raise to cut the stream (see
        :meth:`LLM.stream`); the run passes its budget's check.
        """
        return PlanRound(self, ctx, usage, watch)


@dataclass(frozen=True, slots=True)
class JoinDecision:
    """The joiner's verdict: ``finish`` with ``answer``, or ``replan`` with ``feedback``."""

    action: Literal["finish", "replan"]
    thought: str = ""
    answer: str | None = None
    feedback: str | None = None


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_FINISH = re.compile(r"(?:Action:\s*)?Finish\((.*)\)\s*$", re.DOTALL)


def parse_decision(text: str) -> JoinDecision:
    """Read the joiner's answer: JSON per the joiner schema, or LLMCompiler's ``Finish(...)``.

    Raises:
        LLMResponseError: nothing usable in the text.
    """
    m = _JSON_OBJECT.search(text)
    if m is not None:
        try:
            obj = json.loads(m.group(0))
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("action") in ("finish", "replan"):
            thought = str(obj.get("thought", ""))
            if obj["action"] == "finish":
                return JoinDecision("finish", thought, answer=str(obj.get("answer", "")))
            return JoinDecision("replan", thought, feedback=str(obj.get("feedback", "")))
    m2 = _FINISH.search(text.strip())
    if m2 is not None:
        return JoinDecision("finish", answer=m2.group(1).strip().strip("\"'"))
    if "Replan" in text:
        return JoinDecision("replan", feedback=text.strip())
    raise LLMResponseError(f"the joiner's answer is neither a decision nor Finish(...): {text[:200]!r}")


class Joiner:
    """Decides, from the results, whether to answer or to plan again."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    async def decide(
        self,
        question: str,
        plan: Plan | str,
        reports: list[TaskReport],
        usage: Usage,
        *,
        force_finish: bool = False,
    ) -> JoinDecision:
        """One structured-output call; ``force_finish`` asks for an answer with what exists."""
        from ..grammar import joiner_schema

        schema = joiner_schema()
        if force_finish:
            schema = schema["oneOf"][0]
        messages = joiner_messages(question, plan, reports, force_finish=force_finish)
        text = await self.llm.complete(messages, json_schema=schema, usage=usage)
        decision = parse_decision(text)
        if force_finish and decision.action != "finish":
            return JoinDecision("finish", decision.thought, answer=decision.feedback or "")
        return decision
