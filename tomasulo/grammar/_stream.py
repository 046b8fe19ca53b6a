"""Streaming parse of the text dialect: tasks come out the moment their line is complete.

A task line is complete at its closing parenthesis, so a task is handed over in the same
``feed`` call that brings its ``)``, before the rest of the line (or the next line) arrives.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Protocol

from ..exceptions import (
    DuplicateJoinError,
    IncompletePlanError,
    PlanSyntaxError,
    TaskIdError,
    TextAfterJoinError,
    TooManyTasksError,
)
from ._ast import JOIN, Plan, Task, Template
from ._check import as_toolset, check_answer, check_refs, check_tool_call, make_task
from ._parser import END_OF_PLAN, CallLine, match_task_head, parse_call_line

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..tools import Tool, Toolset

__all__ = ["PlanStream", "aiter_tasks", "parse_plan"]

_THOUGHT = "Thought:"
_SPECIAL = re.compile(r"[\"'\\()\[\]{}]")  # what opens or closes a string or a bracket
# compat: a task written as a list item, `- 1. search(...)` or `* 1. ...`
# compat: text that looks like a task line in a form compat does not read (`1) f(x)`, `**1.** f(x)`)
# (matched at the start of the stripped line, every repeat bounded: linear on long prose lines)
_TASK_LIKE = re.compile(r"\W{0,4}(?:[A-Za-z]{1,12}\s{0,3})?\d{1,9}\W{0,6}[A-Za-z_][\w.\-]{0,64}\(")
_BULLET = re.compile(r"[ \t]*(?:[-*•+][ \t]+|\*\*)(?=\d+[ \t]*\.)")


class PlanStream:
    """Incremental parser for the text dialect.

    >>> s = PlanStream()
    >>> s.feed('1. search(query="Everest")')
    [Task(id=1, tool='search', args=(), kwargs={'query': 'Everest'}, thought=None, line=1, column=1)]
    >>> s.feed("\\n2. join()\\n")
    []
    >>> s.close(); s.joined
    []
    True

    Args:
        tools: validate each task against these tools, a :class:`~tomasulo.tools.Toolset` or a
            list of tools (``None``: syntax and references only).
        compat: also read plans written for LLMCompiler (single quotes, ``True``/``None``,
            ``"$1"`` strings as references, trailing commas).
        start_id: the id of the first task (replans continue the numbering).
        max_tasks: the most tasks a plan may hold (``None``: no cap).
    """

    def __init__(
        self,
        tools: Toolset | Iterable[Tool] | None = None,
        *,
        compat: bool = False,
        start_id: int = 1,
        max_tasks: int | None = None,
    ) -> None:
        self.tools = None if tools is None else as_toolset(tools)
        self.compat = compat
        self.start_id = start_id
        self.max_tasks = max_tasks
        self._parts: list[str] = []  # text of the current, unfinished line, joined when read
        self._quote: str | None = None  # the quote of the string the line is inside, if any
        self._escaped = False
        self._depth = 0  # brackets ( [ { open outside strings on the current line
        self._may_close = False  # the text set as the line so far closed the call's own ')'
        self._lineno = 1
        self._line_done = False  # the current line's task was already emitted at its ')'
        self._tasks: list[Task] = []
        self._thought: str | None = None
        self._join_id: int | None = None
        self._join_thought: str | None = None
        self._answer: Template | None = None
        self._ended = False  # <END_OF_PLAN> seen
        self._unread: tuple[int, str] | None = None  # compat: the first task-like line skipped
        self._closed = False

    @property
    def _buf(self) -> str:
        """The current line's text (its pieces are joined here, once, not at every chunk)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @_buf.setter
    def _buf(self, text: str) -> None:
        self._parts = [text] if text else []
        self._quote, self._escaped, self._depth = None, False, 0
        self._may_close = self._scan(text)

    def _scan(self, text: str) -> bool:
        """Follow strings and brackets through ``text``; whether a ``)`` brought the depth to 0.

        Only the call's own ``)`` can complete a task line: one outside any string that closes
        the bracket the call opened. A line is parsed early only then, so neither a long string
        full of parentheses nor a long list of tuples, ``[(0, 0), (1, 1), ...]``, has the line
        re-parsed at each inner ``)`` (either made long lines quadratic).
        """
        closed = False
        escape_at = 0 if self._escaped else -1  # where an escaped character sits, if any
        self._escaped = False
        for m in _SPECIAL.finditer(text):
            c, i = m.group(), m.start()
            if self._quote is not None:
                if i == escape_at:
                    continue
                if c == "\\":
                    escape_at = i + 1
                elif c == self._quote:
                    self._quote = None
            elif c == '"' or (c == "'" and self.compat):
                self._quote = c
            elif c in "([{":
                self._depth += 1
            elif c in ")]}":
                self._depth -= 1
                closed = closed or (c == ")" and self._depth == 0)
        self._escaped = self._quote is not None and escape_at == len(text)
        return closed

    # -- public API -------------------------------------------------------------------------------

    @property
    def tasks(self) -> list[Task]:
        """Tasks parsed so far."""
        return list(self._tasks)

    @property
    def joined(self) -> bool:
        """Whether ``join()`` has been read."""
        return self._join_id is not None

    @property
    def next_id(self) -> int:
        """The id the next task must have."""
        return self.start_id + len(self._tasks)

    @property
    def plan(self) -> Plan:
        """The plan so far."""
        return Plan(tuple(self._tasks), self._join_id, self._join_thought, self._answer)

    def feed(self, chunk: str) -> list[Task]:
        """Take more text; return the tasks completed by it, in order.

        Raises:
            PlanError: the text so far cannot be a valid plan (the subclass says why).
        """
        if self._closed:
            raise PlanSyntaxError("feed() after close()", line=self._lineno, column=1)
        out: list[Task] = []
        if "\n" not in chunk:
            self._parts.append(chunk)
            if self._scan(chunk) and not self._line_done:
                self._try_early(out)
            return out
        lines = (self._buf + chunk).split("\n")
        self._buf = lines.pop()
        for line in lines:
            if self._line_done:
                self._finish_early_line(line)
            else:
                self._line(line, out)
            self._lineno += 1
            self._line_done = False
        if self._parts and self._may_close:
            self._try_early(out)
        return out

    def close(self) -> list[Task]:
        """End of text: parse what is left and return any last task.

        Raises:
            IncompletePlanError: the text stopped in the middle of a task line.
        """
        if self._closed:
            return []
        self._closed = True
        out: list[Task] = []
        line, self._buf = self._buf, ""
        if self._line_done:
            self._finish_early_line(line)
        elif line.strip():
            try:
                self._line(line, out)
            except PlanSyntaxError as e:
                tail = line.rstrip()[e.column - 1 :]
                cut_off = (
                    e.column > len(line.rstrip())
                    or e.message == "unterminated string"
                    or (tail.isidentifier() and "(" in line)  # a word cut off inside the call
                )
                if cut_off and line.lstrip()[:1].isdigit():
                    raise IncompletePlanError(
                        "the plan ends in the middle of a task",
                        line=e.line,
                        column=e.column,
                        text=line,
                        hint="the model's output was cut off; ask for the rest or replan",
                    ) from e
                raise
        if self._unread is not None and not self._tasks and self._join_id is None:
            lineno, text = self._unread
            raise PlanSyntaxError(
                "no task line in the plan, but this line looks like one",
                line=lineno,
                column=len(text) - len(text.lstrip()) + 1,
                text=text,
                hint="write each task as `N. tool(args)` at the start of its line",
            )
        return out

    # -- lines ------------------------------------------------------------------------------------

    def _unbullet(self, line: str) -> str:
        """Compat: ``- 1. task`` as ``  1. task`` (blanked, so columns stay true)."""
        if self.compat:
            m = _BULLET.match(line)
            if m is not None:
                return " " * m.end() + line[m.end() :]
        return line

    def _try_early(self, out: list[Task]) -> None:
        """The line may have just closed its call: parse it now if it did."""
        line = self._unbullet(self._buf)
        if not line.lstrip()[:1].isdigit() or self._join_id is not None or self._ended:
            return
        try:
            call = parse_call_line(line, self._lineno, compat=self.compat, complete=False)
        except PlanSyntaxError:
            return  # not complete yet (or wrong: the newline will tell)
        self._accept_call(call, line, out)
        self._line_done = True

    def _finish_early_line(self, line: str) -> None:
        """After an early emit, the rest of the line may hold only blanks or <END_OF_PLAN>."""
        line = self._unbullet(line)
        call = parse_call_line(line, self._lineno, compat=self.compat)
        self._check_rest(call, line)

    def _check_rest(self, call: CallLine, line: str) -> None:
        rest = call.rest.strip()
        if not rest:
            return
        if self.compat and (rest.startswith("#") or self._join_id is not None):
            return  # LLMCompiler's `# comment` after a call; anything after join()
        if rest == END_OF_PLAN and (self._join_id is not None or self.compat):
            self._ended = True
            return
        raise PlanSyntaxError(
            f"unexpected text {rest[:40]!r} after the task",
            line=self._lineno,
            column=call.rest_column + len(call.rest) - len(call.rest.lstrip()),
            text=line,
            hint="one task per line",
        )

    def _line(self, line: str, out: list[Task]) -> None:
        line = self._unbullet(line)
        stripped = line.strip()
        if not stripped:
            return
        if self.compat and (self._ended or self._join_id is not None):
            return  # LLMCompiler stops reading at join(): whatever the model adds is ignored
        if self._ended or self._join_id is not None:
            if stripped == END_OF_PLAN and not self._ended:
                self._ended = True
                return
            head = match_task_head(line)
            if head is not None and head.group(2) == JOIN and self._join_id is not None:
                raise DuplicateJoinError(
                    f"a second join() (the plan already ended at task {self._join_id})",
                    line=self._lineno,
                    column=head.start(1) + 1,
                    text=line,
                )
            raise TextAfterJoinError(
                "text after the end of the plan" if self._ended else "text after join()",
                line=self._lineno,
                column=len(line) - len(line.lstrip()) + 1,
                text=line,
                hint=None if not self._ended else "nothing may follow <END_OF_PLAN>",
            )
        if stripped.startswith(_THOUGHT):
            self._thought = stripped[len(_THOUGHT) :].strip()
            return
        if stripped == END_OF_PLAN:
            if not self.compat:
                raise PlanSyntaxError(
                    "<END_OF_PLAN> before join()",
                    line=self._lineno,
                    column=len(line) - len(line.lstrip()) + 1,
                    text=line,
                    hint="end the plan with `N. join()`",
                )
            self._ended = True
            return
        if self.compat and not stripped[:1].isdigit():
            # LLMCompiler-style prose around the plan; a line that looks like a task in a form
            # not read here is kept, so a plan of only such lines is an error, not empty
            if self._unread is None and _TASK_LIKE.match(stripped):
                self._unread = (self._lineno, line)
            return
        call = parse_call_line(line, self._lineno, compat=self.compat)
        self._accept_call(call, line, out)
        self._check_rest(call, line)

    def _accept_call(self, call: CallLine, line: str, out: list[Task]) -> None:
        lineno = self._lineno
        expected = self.next_id
        if call.task_id != expected:
            what = "start at" if not self._tasks else "rise by one to"
            raise TaskIdError(
                f"task id {call.task_id} where {expected} was expected",
                line=lineno,
                column=call.id_column,
                text=line,
                hint=f"ids {what} {expected}",
            )
        thought, self._thought = self._thought, None
        if call.tool == JOIN:
            self._answer = check_answer(call, line, lineno)
            self._join_id = call.task_id
            self._join_thought = thought
            return
        if self.max_tasks is not None and len(self._tasks) >= self.max_tasks:
            raise TooManyTasksError(
                f"more than {self.max_tasks} tasks in one plan",
                line=lineno,
                column=call.id_column,
                text=line,
                hint="end the plan with join() and continue after a replan",
            )
        check_refs(call, call.args, line, lineno)
        if self.tools is not None:
            check_tool_call(call, self.tools, line, lineno)
        task = make_task(call, thought, lineno)
        self._tasks.append(task)
        out.append(task)


def parse_plan(
    text: str,
    tools: Toolset | Iterable[Tool] | None = None,
    *,
    compat: bool = False,
    start_id: int = 1,
    max_tasks: int | None = None,
) -> Plan:
    """Parse a whole plan in the text dialect; ``tools`` (a toolset or a list of tools)
    validates each task.

    >>> plan = parse_plan('1. search(query="x")\\n2. math(expression="${1} * 2")\\n3. join()')
    >>> [t.tool for t in plan], plan.joined
    (['search', 'math'], True)

    Raises:
        PlanError: the first problem found, with line, column and a hint.
    """
    stream = PlanStream(tools, compat=compat, start_id=start_id, max_tasks=max_tasks)
    stream.feed(text)
    stream.close()
    return stream.plan


class TaskParser(Protocol):
    """A streaming plan parser, as :func:`aiter_parsed` drives it (:class:`PlanStream` is one)."""

    def feed(self, chunk: str) -> list[Task]:
        """Take more text; return the tasks it completed."""
        ...

    def close(self) -> list[Task]:
        """End of text; return any last task."""
        ...


async def aiter_parsed(chunks: AsyncIterable[str], parser: TaskParser) -> AsyncIterator[Task]:
    """Feed ``chunks`` to ``parser``, yielding each task as it completes, then close the parser.

    The one async adapter behind :func:`aiter_tasks` and ``aiter_json_tasks``.
    """
    async for chunk in chunks:
        for task in parser.feed(chunk):
            yield task
    for task in parser.close():
        yield task


def aiter_tasks(
    chunks: AsyncIterable[str],
    tools: Toolset | Iterable[Tool] | None = None,
    *,
    compat: bool = False,
    start_id: int = 1,
    max_tasks: int | None = None,
    stream: PlanStream | None = None,
) -> AsyncIterator[Task]:
    """Turn a stream of text chunks into a stream of tasks, each as soon as its line completes.

    Pass ``stream`` to keep a handle on the parser (for ``stream.plan`` and ``stream.joined``).
    """
    parser = stream or PlanStream(tools, compat=compat, start_id=start_id, max_tasks=max_tasks)
    return aiter_parsed(chunks, parser)
