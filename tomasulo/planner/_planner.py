"""The planner (streams a plan from the LLM, task by task) and the joiner (finish or replan)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from .._logging import get_logger
from ..exceptions import ConfigError, LLMError, LLMResponseError, LLMTruncated, PlanError
from ..grammar import END_OF_PLAN, JsonPlanStream, Plan, PlanStream, Task, build_grammar
from ..tools import Toolset
from ._answer_stream import AnswerTextStream
from ._conversation import Turn
from ._dialects import GrammarForm, GrammarSpec
from ._model import Model
from ._output import OutputSpec, decision_schema
from ._prompts import PlanContext, TaskReport, joiner_messages, planner_messages
from ._usage import Usage

__all__ = [
    "JOINER_MAX_TOKENS",
    "PLAN_TOKENS_PER_TASK",
    "JoinDecision",
    "Joiner",
    "PlanRound",
    "Planner",
    "parse_decision",
]

log = get_logger("tomasulo.planner")

#: Tokens a plan may spend per task it may hold (the request's ``max_tokens`` is this times the
#: task cap, plus one task's worth for the join and thoughts): a plan is bounded by its cap.
PLAN_TOKENS_PER_TASK = 256
#: ``max_tokens`` of a joiner call: a thought and an answer, not an essay.
JOINER_MAX_TOKENS = 1024
#: Grammar specs a planner keeps (by toolset, task cap and first id), oldest dropped first.
_MAX_SPECS = 256

PLAN_REPAIR = (
    "That answer holds no plan. Write the plan itself now, one task per line as "
    "`N. tool(arguments)`, starting at task {start_id}, and end it with `N. join()`; write "
    "nothing else."
)
JOINER_REPAIR = (
    "That answer could not be read ({error}). Answer again with only the JSON object the "
    "instructions describe, and keep the thought short."
)


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
        model = planner.llm
        #: The one form of the plan grammar the model reads (``None``: it takes none).
        self.form: GrammarForm | None = model.grammar_form()
        #: No grammar is ever sent: the plan is read in compat mode (LLMCompiler's syntax too).
        self.compat = self.form is None
        self.output: Literal["text", "json"] = (
            "json" if self.form == "json_schema" and planner.use_grammar else "text"
        )
        self._parser: PlanStream | JsonPlanStream = self._make_parser()
        self._chunks: list[str] = []
        #: whether the model's first answer held no plan and was asked again (``plain`` only)
        self.repaired = False
        #: Called with each piece of the model's text as it arrives, before it is parsed (the
        #: run times the first one and passes the text on as ``PlanDelta`` events).
        self.on_text: Callable[[str], None] | None = None
        #: The messages of the round's request, once :meth:`tasks` has sent it. Their first two
        #: (system text, question) are the same for every call of a run: the joiner's prompt
        #: starts with them (``Joiner.decide(prefix=...)``), so a prefix cache serves them.
        self.messages: list[dict[str, str]] = []

    def _make_parser(self) -> PlanStream | JsonPlanStream:
        ctx, tools = self.ctx, self.planner.tools
        if self.output == "text":
            return PlanStream(tools, compat=self.compat, start_id=ctx.start_id, max_tasks=ctx.max_tasks)
        return JsonPlanStream(tools, start_id=ctx.start_id, max_tasks=ctx.max_tasks)

    async def _prepare(self) -> None:
        """Build the one form of the grammar the model reads (off the event loop: a first build
        takes milliseconds), or take it from the planner's cache; the parser was made with the round."""
        planner, ctx, form = self.planner, self.ctx, self.form
        if planner.use_grammar and form is not None:
            key = (planner.tools.fingerprint(), ctx.max_tasks, ctx.start_id, form)
            spec = planner._specs.get(key)
            if spec is None:  # built once per (toolset, cap, start, form), off the loop

                def build() -> GrammarSpec:
                    g = build_grammar(planner.tools, max_tasks=ctx.max_tasks, start_id=ctx.start_id)
                    if form == "gbnf":
                        return GrammarSpec(gbnf=g.gbnf())
                    if form == "lark":
                        return GrammarSpec(lark=g.lark())
                    return GrammarSpec(json_schema=g.json_schema())

                spec = await anyio.to_thread.run_sync(build)
                if len(planner._specs) >= _MAX_SPECS:
                    planner._specs.pop(next(iter(planner._specs)))
                planner._specs[key] = spec
            # a plan that starts at once: a thread hop costs milliseconds on a busy machine
            self.grammar = spec

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

    async def tasks(self) -> AsyncGenerator[Task, None]:
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
        self.messages = messages
        async for task in self._stream(messages):
            yield task
        if self.compat and not self.plan.tasks and not self.joined:
            # prose with no task in it (a server without grammars lets a model chat): ask once
            # more, saying what was wanted, before the run hears of an empty plan
            self.repaired = True
            log.info("plan repair", chars=len(self.text), start_id=self.ctx.start_id)
            messages = [
                *messages,
                {"role": "assistant", "content": self.text[:2000]},
                {"role": "user", "content": PLAN_REPAIR.format(start_id=self.ctx.start_id)},
            ]
            self._chunks = []
            self._parser = self._make_parser()
            async for task in self._stream(messages):
                yield task

    async def _stream(self, messages: list[dict[str, str]]) -> AsyncIterator[Task]:
        llm = self.planner.llm
        stream = llm.stream(
            messages,
            grammar=self.grammar,
            max_tokens=self.planner.max_tokens(self.ctx.max_tasks),
            # LLMCompiler-style models end plans with this marker; without a grammar, stop there
            stop=[END_OF_PLAN] if self.compat and self.output == "text" else None,
            usage=self.usage,
            watch=self.watch,
        )
        try:
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    self._chunks.append(chunk)
                    if self.on_text is not None:
                        self.on_text(chunk)
                    for task in self._read(self._parser.feed, chunk):
                        yield task
                    if self._parser.joined and self.compat:
                        # without a grammar the model may ramble on: stop paying for tokens. With
                        # one, the server stops right after join() and sends its usage report.
                        break
        except LLMTruncated as e:
            if not self._parser.joined:  # cut off mid-plan: incomplete, never a finished plan
                n = len(self.plan.tasks)
                raise LLMTruncated(
                    f"the plan was cut off at the token limit (max_tokens={e.max_tokens}) after "
                    f"{n} complete task{'s' * (n != 1)} and before its join(); {e}",
                    partial=e.partial,
                    max_tokens=e.max_tokens,
                ) from e
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
    """Asks a model for plans under the toolset's grammar.

    Args:
        llm: the model: an :class:`~tomasulo.planner.LLM`, or anything else that is a
            :class:`~tomasulo.planner.Model` (a wrapper of one, an in-process model).
        tools: what plans may call.
        use_grammar: send the plan grammar to servers that take one (``plain`` never does).
        tokens_per_task: the plan's ``max_tokens`` is this times (task cap + 1); a plan cut
            off there is incomplete (:class:`~tomasulo.exceptions.LLMTruncated`) and replanned.
    """

    def __init__(
        self,
        llm: Model,
        tools: Toolset,
        *,
        use_grammar: bool = True,
        tokens_per_task: int = PLAN_TOKENS_PER_TASK,
    ) -> None:
        if tokens_per_task < 1:
            raise ConfigError(f"tokens_per_task must be at least 1, got {tokens_per_task}")
        self.llm = llm
        self.tools = tools
        self.use_grammar = use_grammar
        self.tokens_per_task = tokens_per_task
        self._specs: dict[tuple[str, int, int, str], GrammarSpec] = {}  # see PlanRound._prepare

    def max_tokens(self, max_tasks: int) -> int:
        """The ``max_tokens`` of a plan of at most ``max_tasks`` tasks (and its join)."""
        return self.tokens_per_task * (max_tasks + 1)

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
    """The joiner's verdict: ``finish`` with ``answer``, or ``replan`` with ``feedback``.

    ``forced`` is set when no reply of the joiner could be read, even after a repair round:
    the decision is then ``finish`` with no ``answer``, and ``thought`` says why; the run
    answers with the best result it has instead of failing. With a typed answer
    (``output_type=``), ``output`` is the validated value and ``answer`` its JSON text; a
    reply whose answer does not fit counts as unreadable.
    """

    action: Literal["finish", "replan"]
    thought: str = ""
    answer: str | None = None
    feedback: str | None = None
    forced: bool = False
    output: Any = None


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_FINISH = re.compile(r"(?:Action:\s*)?Finish\((.*)\)\s*$", re.DOTALL)


def parse_decision(text: str, output: OutputSpec | None = None) -> JoinDecision:
    """Read the joiner's answer: JSON per the joiner schema, or LLMCompiler's ``Finish(...)``.

    With ``output``, a finish's answer must fit it (see :class:`OutputSpec`): the decision
    then carries the typed value in ``output`` and its JSON text in ``answer``.

    Raises:
        LLMResponseError: nothing usable in the text, or an answer that does not fit ``output``.
    """
    decision = _parse_decision(text)
    if output is None or decision.action != "finish":
        return decision
    raw: Any = decision.answer
    m = _JSON_OBJECT.search(text)
    if m is not None:
        try:
            obj = json.loads(m.group(0), strict=False)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("action") == "finish" and "answer" in obj:
            raw = obj["answer"]
    try:
        value = output.validate(raw)
    except ValueError as e:
        raise LLMResponseError(str(e)) from None
    return JoinDecision("finish", decision.thought, answer=output.to_text(value), output=value)


def _parse_decision(text: str) -> JoinDecision:
    m = _JSON_OBJECT.search(text)
    if m is not None:
        try:
            # strict=False: raw control characters in strings, which llama-cpp-python's JSON
            # schema grammar lets a model write (JSON proper wants them escaped)
            obj = json.loads(m.group(0), strict=False)
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
    """Decides, from the results, whether to answer or to plan again.

    The decision is asked for under the joiner's JSON schema, in the field the server's
    dialect honours; with ``output`` (a typed answer), the finish's ``answer`` is typed by
    its schema. A reply that does not parse, was cut off at ``max_tokens`` or whose answer
    does not fit gets one repair round (the message says what was wrong); when that fails
    too the decision is a forced finish (``forced=True``).

    Args:
        llm: the model (any :class:`~tomasulo.planner.Model`; it may differ from the planner's).
        max_tokens: the ``max_tokens`` of each decision call.
    """

    def __init__(self, llm: Model, *, max_tokens: int = JOINER_MAX_TOKENS) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    async def decide(
        self,
        question: str,
        plan: Plan | str,
        reports: list[TaskReport],
        usage: Usage,
        *,
        force_finish: bool = False,
        on_answer: Callable[[str], None] | None = None,
        proposed: str | None = None,
        prefix: Sequence[Mapping[str, str]] | None = None,
        output: OutputSpec | None = None,
        instructions: str = "",
        history: Sequence[Turn] = (),
    ) -> JoinDecision:
        """One structured-output call; ``force_finish`` asks for an answer with what exists.

        With ``on_answer`` the reply is streamed, and ``on_answer`` is called with each new
        piece of the answer's text as the model writes it (decoded from the reply's JSON), so
        a caller can show the first words before the decision is complete. A stream that
        breaks off after its first text is asked again without streaming. ``proposed`` is the
        plan's answer template, rendered, shown to the joiner as the plan's proposed answer.

        ``prefix`` is the planner's first messages (``PlanRound.messages``): on a server with
        a prefix cache (``LLM(prefix_cache=True)``) the joiner's prompt extends the planner's
        (see :func:`~tomasulo.planner.joiner_messages`); otherwise it is ignored and the joiner
        has its own short prompt.

        ``output`` types the answer, ``instructions`` are added to the joiner's prompt and
        ``history`` holds the conversation's earlier turns (see :func:`joiner_messages`).
        """
        if not getattr(self.llm, "prefix_cache", False):  # a Model need not have the setting
            prefix = None
        from ..grammar import joiner_schema

        schema = decision_schema(joiner_schema(), output, force_finish=force_finish)
        messages = joiner_messages(
            question,
            plan,
            reports,
            force_finish=force_finish,
            proposed=proposed,
            prefix=prefix,
            instructions=instructions,
            history=history,
            output_schema=None if output is None else output.schema,
        )
        error: LLMResponseError | None = None
        for attempt in (1, 2):
            text = ""
            try:
                if on_answer is None:
                    text = await self.llm.complete(
                        messages, json_schema=schema, max_tokens=self.max_tokens, usage=usage
                    )
                else:
                    text = await self._streamed(messages, schema, usage, on_answer)
                decision = parse_decision(text, output)
                if force_finish and decision.action != "finish" and output is not None:
                    raise LLMResponseError("it asked for a replan where a typed answer was due")
            except LLMResponseError as e:  # unreadable, or cut off (LLMTruncated)
                error, text = e, e.partial or text
                log.warning("joiner reply unreadable", attempt=attempt, error=str(e)[:300])
                messages = [
                    *messages,
                    {"role": "assistant", "content": text[:2000]},
                    {"role": "user", "content": JOINER_REPAIR.format(error=_brief(e))},
                ]
                continue
            if force_finish and decision.action != "finish":
                return JoinDecision("finish", decision.thought, answer=decision.feedback or "")
            return decision
        why = f"the joiner's replies could not be read, even after a repair round: {_brief(error)}"
        return JoinDecision("finish", why, forced=True)

    async def _streamed(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, object],
        usage: Usage,
        on_answer: Callable[[str], None],
    ) -> str:
        """The reply, streamed, with its answer's text passed to ``on_answer`` as it comes."""
        decoder = AnswerTextStream()
        parts: list[str] = []
        stream = self.llm.stream(
            messages,
            grammar=GrammarSpec(json_schema=schema, name="answer"),
            max_tokens=self.max_tokens,
            usage=usage,
        )
        try:
            async with aclosing(stream) as chunks:
                async for chunk in chunks:
                    parts.append(chunk)
                    piece = decoder.feed(chunk)
                    if piece:
                        on_answer(piece)
        except LLMResponseError:
            raise
        except LLMError as e:
            if not e.partial:
                raise
            # broken off mid-reply: a stream is not retried, a whole reply is (RetryPolicy)
            log.warning("joiner stream broke off; asking again", error=_brief(e))
            return await self.llm.complete(
                messages, json_schema=schema, max_tokens=self.max_tokens, usage=usage
            )
        return "".join(parts)


def _brief(error: BaseException | None) -> str:
    text = str(error) if error is not None else "no reply"
    return text if len(text) <= 300 else text[:297] + "..."
